/*
 * Force-included before every C DMF source (tools/cdmf-oracle/build.sh): WPP tracing as no-ops.
 *
 * DMF's sources are written for the WDK's trace preprocessor (tracewpp), which turns each
 * TraceEvents/FuncEntry/... call into an ETW write and generates the <file>.tmh each source
 * includes. Without it the calls vanish here and the .tmh files are empty (build.sh makes them).
 */
#pragma once

#define TraceEvents(...) ((void)0)
#define TraceError(...) ((void)0)
#define TraceInformation(...) ((void)0)
#define TraceVerbose(...) ((void)0)
#define TraceWarning(...) ((void)0)
#define TraceLoggingWrite(...) ((void)0)
#define FuncEntry(...) ((void)0)
#define FuncEntryArguments(...) ((void)0)
#define FuncExit(...) ((void)0)
#define FuncExitVoid(...) ((void)0)
#define FuncExitNoReturn(...) ((void)0)
#define WPP_INIT_TRACING(...) ((void)0)
#define WPP_CLEANUP(...) ((void)0)

/* wdm.h and mingw-w64's intrin.h both declare these two when seen from C++. */
#define __INTRINSIC_DEFINED_InterlockedBitTestAndSet
#define __INTRINSIC_DEFINED_InterlockedBitTestAndReset

/* SAL annotations the WDK's headers define and mingw-w64 10's do not. */
#define _IRQL_always_function_max_(x)
#define _IRQL_always_function_min_(x)
#define __deref_opt_out_bcount_opt(x)

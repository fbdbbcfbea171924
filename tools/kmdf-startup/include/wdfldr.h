/*
 * wdfldr.h for the kmdf check on Linux: the loader types that fxldr.h (Microsoft's
 * driver <-> loader binding contract, MIT, in the KMDF source) takes from the WDK-internal
 * wdfldr.h, which is not public. Only what fxldr.h's declarations need.
 */
#pragma once

typedef ULONG WDF_MAJOR_VERSION;
typedef ULONG WDF_MINOR_VERSION;
typedef ULONG WDF_BUILD_NUMBER;

/* The globals the loader hands back: the driver's PWDF_DRIVER_GLOBALS. */
typedef PVOID WDF_COMPONENT_GLOBALS, *PWDF_COMPONENT_GLOBALS;

typedef struct _WDF_INTERFACE_HEADER {
    const GUID *InterfaceType;
    ULONG InterfaceSize;
} WDF_INTERFACE_HEADER, *PWDF_INTERFACE_HEADER;

typedef NTSTATUS (*PWDF_LDR_DIAGNOSTICS_VALUE_BY_NAME_AS_ULONG)(PUNICODE_STRING ValueName, PULONG Value);

/* SAL annotations fxldr.h uses that mingw-w64's sal.h does not define. */
#ifndef __field_bcount
#define __field_bcount(size)
#endif
#ifndef __deref_inout
#define __deref_inout
#endif
#ifndef __deref_out
#define __deref_out
#endif

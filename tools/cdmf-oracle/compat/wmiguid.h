/*
 * wmiguid.h stand-in. mingw-w64 10 has no wmiguid.h; DMF's kernel includes ask for it right after
 * ntstrsafe.h and wdf.h, which makes it the place for what else mingw-w64 10 lacks of the WDK's
 * headers (wdm.h's pool flags, ntstrsafe.h's UNICODE_STRING routines, ntintsafe.h's signed
 * arithmetic, the triage dump types). Only what the Modules built here use.
 */
#pragma once
#include <dmf_wdk_compat.h>

#if defined(__cplusplus)
/* DmfVerifierAssert passes string literals to RtlAssert, whose parameters are PVOID and PSTR
 * (MSVC accepts that in C++, clang does not). */
extern "C++" inline VOID RtlAssert(const char *Assertion, const char *FileName, ULONG LineNumber,
                                   const char *Message)
{
    RtlAssert((PVOID)Assertion, (PVOID)FileName, LineNumber, (PSTR)Message);
}
#endif

/* ntintsafe.h (ENABLE_INTSAFE_SIGNED_FUNCTIONS) routines mingw-w64 10 lacks. */
static __inline NTSTATUS RtlLong64Mult(LONGLONG Multiplicand, LONGLONG Multiplier, LONGLONG *Result)
{
    if (__builtin_mul_overflow(Multiplicand, Multiplier, Result)) {
        *Result = 0;
        return STATUS_INTEGER_OVERFLOW;
    }
    return STATUS_SUCCESS;
}
static __inline NTSTATUS RtlLong64Add(LONGLONG Augend, LONGLONG Addend, LONGLONG *Result)
{
    if (__builtin_add_overflow(Augend, Addend, Result)) {
        *Result = 0;
        return STATUS_INTEGER_OVERFLOW;
    }
    return STATUS_SUCCESS;
}
static __inline NTSTATUS RtlInt32Mult(INT32 Multiplicand, INT32 Multiplier, INT32 *Result)
{
    if (__builtin_mul_overflow(Multiplicand, Multiplier, Result)) {
        *Result = 0;
        return STATUS_INTEGER_OVERFLOW;
    }
    return STATUS_SUCCESS;
}
static __inline NTSTATUS RtlInt32Add(INT32 Augend, INT32 Addend, INT32 *Result)
{
    if (__builtin_add_overflow(Augend, Addend, Result)) {
        *Result = 0;
        return STATUS_INTEGER_OVERFLOW;
    }
    return STATUS_SUCCESS;
}

/* ntstrsafe.h's UNICODE_STRING routines mingw-w64 10 lacks, on its NUL-terminated ones (which need
 * room for the terminator the real routines do not write). */
static __inline NTSTATUS RtlUnicodeStringVPrintf(PUNICODE_STRING DestinationString,
                                                 NTSTRSAFE_PCWSTR Format, va_list ArgList)
{
    size_t bytes = 0;
    NTSTATUS status = RtlStringCbVPrintfW(DestinationString->Buffer,
                                          DestinationString->MaximumLength, Format, ArgList);
    if (NT_SUCCESS(status)) {
        status = RtlStringCbLengthW(DestinationString->Buffer, DestinationString->MaximumLength,
                                    &bytes);
    }
    DestinationString->Length = NT_SUCCESS(status) ? (USHORT)bytes : 0;
    return status;
}
static __inline NTSTATUS RtlUnicodeStringPrintf(PUNICODE_STRING DestinationString,
                                                NTSTRSAFE_PCWSTR Format, ...)
{
    NTSTATUS status;
    va_list args;
    va_start(args, Format);
    status = RtlUnicodeStringVPrintf(DestinationString, Format, args);
    va_end(args);
    return status;
}
static __inline NTSTATUS RtlUnicodeStringInit(PUNICODE_STRING DestinationString, NTSTRSAFE_PCWSTR Source)
{
    size_t bytes = 0;
    NTSTATUS status = STATUS_SUCCESS;
    if (Source != NULL) {
        status = RtlStringCbLengthW(Source, 0xFFFE, &bytes);
    }
    DestinationString->Buffer = (PWCH)Source;
    DestinationString->Length = NT_SUCCESS(status) ? (USHORT)bytes : 0;
    DestinationString->MaximumLength = NT_SUCCESS(status) ? (USHORT)(bytes + (Source ? sizeof(WCHAR) : 0)) : 0;
    return status;
}
static __inline NTSTATUS RtlUnicodeStringCopy(PUNICODE_STRING DestinationString, PCUNICODE_STRING SourceString)
{
    if (SourceString->Length > DestinationString->MaximumLength) {
        DestinationString->Length = 0;
        return STATUS_BUFFER_OVERFLOW;
    }
    RtlCopyMemory(DestinationString->Buffer, SourceString->Buffer, SourceString->Length);
    DestinationString->Length = SourceString->Length;
    return STATUS_SUCCESS;
}
static __inline NTSTATUS RtlStringCchCopyUnicodeString(NTSTRSAFE_PWSTR Destination, size_t Chars,
                                                       PCUNICODE_STRING Source)
{
    size_t n = Source->Length / sizeof(WCHAR);
    if (Chars == 0) {
        return STATUS_INVALID_PARAMETER;
    }
    if (n >= Chars) {
        Destination[0] = L'\0';
        return STATUS_BUFFER_OVERFLOW;
    }
    RtlCopyMemory(Destination, Source->Buffer, Source->Length);
    Destination[n] = L'\0';
    return STATUS_SUCCESS;
}

/* wdm.h's triage dump types (Windows 10 1809+), for Dmf_CrashDump. */
typedef struct _KADDRESS_RANGE {
    PVOID Address;
    SIZE_T Size;
} KADDRESS_RANGE, *PKADDRESS_RANGE;
typedef struct _KTRIAGE_DUMP_DATA_ARRAY {
    LIST_ENTRY List;
    ULONG NumBlocksUsed;
    ULONG MaxBlocks;
    ULONG DataSize;
    ULONG ComponentNameBufferLength;
    PCHAR ComponentName;
    KADDRESS_RANGE Blocks[1];
} KTRIAGE_DUMP_DATA_ARRAY, *PKTRIAGE_DUMP_DATA_ARRAY;
#define KB_TRIAGE_DUMP_DATA_FLAG_BUGCHECK_ACTIVE 0x00000001
typedef struct _KBUGCHECK_TRIAGE_DUMP_DATA {
    PKTRIAGE_DUMP_DATA_ARRAY DataArray;
    ULONG Flags;
    ULONG MaxVirtMemBlocks;
    PKADDRESS_RANGE VirtMemBlocks;
    ULONG BugCheckCode;
    ULONG_PTR BugCheckParameter1;
    ULONG_PTR BugCheckParameter2;
    ULONG_PTR BugCheckParameter3;
    ULONG_PTR BugCheckParameter4;
} KBUGCHECK_TRIAGE_DUMP_DATA, *PKBUGCHECK_TRIAGE_DUMP_DATA;

/* mingw-w64 10's KeInitializeCallbackRecord does not parenthesise its argument
 * (KeInitializeCallbackRecord(&record) does not compile); wdm.h's does. */
#undef KeInitializeCallbackRecord
#define KeInitializeCallbackRecord(CallbackRecord) (CallbackRecord)->State = BufferEmpty

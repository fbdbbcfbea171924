/*
 * The WPP in-flight recorder, absent: creating a log fails and there is no default log, so DMF
 * runs without a recorder (what it does when the recorder is disabled).
 */
#pragma once

typedef struct _RECORDER_LOG_OPAQUE *RECORDER_LOG;

#define RECORDER_LOG_IDENTIFIER_MAX_CHARS 16
#define RECORDER_SIZE_DEFAULT 1024

typedef struct _RECORDER_LOG_CREATE_PARAMS {
    ULONG Size;
    PVOID Reserved;
    ULONG TotalBufferSize;
    ULONG ErrorPartitionSize;
    CHAR LogIdentifier[RECORDER_LOG_IDENTIFIER_MAX_CHARS];
} RECORDER_LOG_CREATE_PARAMS, *PRECORDER_LOG_CREATE_PARAMS;

static __inline VOID RECORDER_LOG_CREATE_PARAMS_INIT(PRECORDER_LOG_CREATE_PARAMS Params, PCSTR Identifier)
{
    RtlZeroMemory(Params, sizeof(*Params));
    Params->Size = sizeof(*Params);
    Params->TotalBufferSize = RECORDER_SIZE_DEFAULT;
    (VOID)Identifier;
}

static __inline NTSTATUS WppRecorderLogCreate(PRECORDER_LOG_CREATE_PARAMS Params, RECORDER_LOG *Log)
{
    (VOID)Params;
    *Log = NULL;
    return STATUS_NOT_SUPPORTED;
}

static __inline VOID WppRecorderLogDelete(RECORDER_LOG Log)
{
    (VOID)Log;
}

static __inline BOOLEAN WppRecorderIsDefaultLogAvailable(VOID)
{
    return FALSE;
}

static __inline RECORDER_LOG WppRecorderLogGetDefault(VOID)
{
    return NULL;
}

/* spb.h stand-in (mingw-w64 10 has none): the types DMF's Module headers name. No Module built
 * here uses them. */
#pragma once
typedef struct _SPB_TRANSFER_LIST {
    ULONG Size;
    ULONG Reserved;
    ULONG TransferCount;
    PVOID Transfers;
} SPB_TRANSFER_LIST, *PSPB_TRANSFER_LIST;

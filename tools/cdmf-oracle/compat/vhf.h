/* vhf.h stand-in (mingw-w64 10 has none): the types DMF's Module headers name. No Module built
 * here uses them. */
#pragma once
typedef PVOID VHFOPERATIONHANDLE;
typedef VOID EVT_VHF_ASYNC_OPERATION(PVOID VhfClientContext, VHFOPERATIONHANDLE VhfOperationHandle,
                                     PVOID VhfOperationContext, PHID_XFER_PACKET HidTransferPacket);
typedef EVT_VHF_ASYNC_OPERATION *PFN_VHF_ASYNC_OPERATION;
typedef VOID EVT_VHF_READY_FOR_NEXT_READ_REPORT(PVOID VhfClientContext);
typedef EVT_VHF_READY_FOR_NEXT_READ_REPORT *PFN_VHF_READY_FOR_NEXT_READ_REPORT;

/* Udecx.h stand-in (mingw-w64 10 has none): the types DMF's Module headers name. No Module built
 * here uses them. */
#pragma once
typedef struct UDECXUSBDEVICE__ *UDECXUSBDEVICE;
typedef struct UDECXUSBENDPOINT__ *UDECXUSBENDPOINT;
typedef struct UDECXUSBDEVICE_INIT__ *PUDECXUSBDEVICE_INIT;
typedef struct UDECXUSBENDPOINT_INIT__ *PUDECXUSBENDPOINT_INIT;
typedef enum _UDECX_WDF_DEVICE_RESET_ACTION {
    UdecxWdfDeviceResetActionResetEachUsbDevice = 0,
    UdecxWdfDeviceResetActionResetWdfDevice
} UDECX_WDF_DEVICE_RESET_ACTION;
typedef enum _UDECX_USB_DEVICE_SPEED {
    UdecxUsbLowSpeed = 0,
    UdecxUsbFullSpeed,
    UdecxUsbHighSpeed,
    UdecxUsbSuperSpeed
} UDECX_USB_DEVICE_SPEED;
typedef enum _UDECX_ENDPOINT_TYPE {
    UdecxEndpointTypeSimple,
    UdecxEndpointTypeDynamic
} UDECX_ENDPOINT_TYPE;

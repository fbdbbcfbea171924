//! The C types of the Windows x64 ABI (LLP64), for the generated bindings: on Linux
//! `core::ffi::c_long` is 64 bits, on Windows 32, and the driver's structures are Windows ones.

/// `char`.
pub type c_char = i8;
/// `unsigned char`.
pub type c_uchar = u8;
/// `short`.
pub type c_short = i16;
/// `unsigned short`.
pub type c_ushort = u16;
/// `int`.
pub type c_int = i32;
/// `unsigned int`.
pub type c_uint = u32;
/// `long`: 32 bits on Windows.
pub type c_long = i32;
/// `unsigned long`: 32 bits on Windows.
pub type c_ulong = u32;
/// `long long`.
pub type c_longlong = i64;
/// `unsigned long long`.
pub type c_ulonglong = u64;
/// `void`.
pub type c_void = core::ffi::c_void;

const _: () = {
    assert!(size_of::<c_ulong>() == 4);
    assert!(size_of::<c_long>() == 4);
};

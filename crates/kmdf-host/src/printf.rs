//! The kernel's `printf` dialect, for `DbgPrintEx`.
//!
//! Conversions `d i u x X o c s S Z p %`, flags `- 0 + space #`, width and precision (numbers or
//! `*`), and the Microsoft length modifiers: `h`, `hh`, `l` (32 bits: Windows is LLP64), `ll`,
//! `I64`, `I32`, `I` and `z` (pointer-sized), `w` (wide). `%s` is an ANSI string, `%ws`/`%S` a
//! UTF-16 one, `%Z` an `ANSI_STRING*`, `%wZ` a `UNICODE_STRING*`. Floating point is not supported
//! in kernel debug output and prints as `<%f>`.

use core::fmt::Write as _;

/// Formats `format` with argument words from `next`.
///
/// # Safety
/// Every pointer conversion (`s`, `S`, `Z`) must be given a null pointer or a pointer to a live,
/// terminated (or counted) string, as `DbgPrintEx`'s contract requires.
#[allow(
    clippy::too_many_lines,
    reason = "one pass over the format: flags, width, precision, length, conversion"
)]
pub unsafe fn format(format: &[u8], next: &mut dyn FnMut() -> usize) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < format.len() {
        let b = format[i];
        i += 1;
        if b != b'%' {
            out.push(char::from(b));
            continue;
        }
        let mut spec = Spec::default();
        while let Some(&f) = format.get(i) {
            match f {
                b'-' => spec.left = true,
                b'0' => spec.zero = true,
                b'+' => spec.plus = true,
                b' ' => spec.space = true,
                b'#' => spec.alternate = true,
                _ => break,
            }
            i += 1;
        }
        if format.get(i) == Some(&b'*') {
            spec.width = next() as u32 as i32 as usize;
            i += 1;
        } else {
            while let Some(d) = format.get(i).filter(|d| d.is_ascii_digit()) {
                spec.width = spec.width * 10 + usize::from(d - b'0');
                i += 1;
            }
        }
        if format.get(i) == Some(&b'.') {
            i += 1;
            let mut precision = 0;
            if format.get(i) == Some(&b'*') {
                precision = next() as u32 as usize;
                i += 1;
            } else {
                while let Some(d) = format.get(i).filter(|d| d.is_ascii_digit()) {
                    precision = precision * 10 + usize::from(d - b'0');
                    i += 1;
                }
            }
            spec.precision = Some(precision);
        }
        let rest = &format[i..];
        let (bits, wide, skip) = match rest {
            [b'I', b'6', b'4', ..] => (64, false, 3),
            [b'I', b'3', b'2', ..] => (32, false, 3),
            [b'l', b'l', ..] => (64, false, 2),
            [b'h', b'h', ..] => (8, false, 2),
            [b'I' | b'z', ..] => (64, false, 1),
            [b'l' | b'w', ..] => (32, true, 1),
            [b'h', ..] => (16, false, 1),
            _ => (32, false, 0),
        };
        i += skip;
        let Some(&conversion) = format.get(i) else {
            break;
        };
        i += 1;
        let body = match conversion {
            b'%' => "%".to_owned(),
            b'd' | b'i' => {
                let v = sign_extend(next(), bits);
                let mut s = v.unsigned_abs().to_string();
                s = spec.with_precision(s);
                if v < 0 {
                    s.insert(0, '-');
                } else if spec.plus {
                    s.insert(0, '+');
                } else if spec.space {
                    s.insert(0, ' ');
                }
                s
            }
            b'u' => spec.with_precision(truncate(next(), bits).to_string()),
            b'x' | b'X' | b'o' => {
                let v = truncate(next(), bits);
                let digits = match conversion {
                    b'x' => format!("{v:x}"),
                    b'X' => format!("{v:X}"),
                    _ => format!("{v:o}"),
                };
                let mut s = spec.with_precision(digits);
                if spec.alternate && v != 0 {
                    s.insert_str(
                        0,
                        match conversion {
                            b'x' => "0x",
                            b'X' => "0X",
                            _ => "0",
                        },
                    );
                }
                s
            }
            b'p' => format!("{:016X}", next()),
            b'c' | b'C' => char::from_u32(next() as u32 & if wide { 0xFFFF } else { 0xFF })
                .map_or_else(String::new, String::from),
            b's' | b'S' => {
                let p = next();
                let wide = wide || conversion == b'S';
                // SAFETY: the caller's contract.
                let mut s = unsafe { read_string(p, wide) };
                if let Some(p) = spec.precision {
                    s = s.chars().take(p).collect();
                }
                s
            }
            b'Z' => {
                // SAFETY: the caller's contract: a counted string (ANSI_STRING or UNICODE_STRING).
                unsafe { read_counted(next(), wide) }
            }
            b'f' | b'F' | b'e' | b'E' | b'g' | b'G' | b'a' | b'A' => {
                let _ = next();
                format!("<%{}>", char::from(conversion))
            }
            other => format!("%{}", char::from(other)),
        };
        spec.pad(
            &mut out,
            &body,
            matches!(conversion, b'd' | b'i' | b'u' | b'x' | b'X' | b'o'),
        );
    }
    out
}

#[derive(Default)]
#[allow(
    clippy::struct_excessive_bools,
    reason = "printf's five flag characters"
)]
struct Spec {
    left: bool,
    zero: bool,
    plus: bool,
    space: bool,
    alternate: bool,
    width: usize,
    precision: Option<usize>,
}

impl Spec {
    fn with_precision(&self, digits: String) -> String {
        match self.precision {
            Some(p) if digits.len() < p => format!("{}{digits}", "0".repeat(p - digits.len())),
            _ => digits,
        }
    }

    fn pad(&self, out: &mut String, body: &str, numeric: bool) {
        let len = body.chars().count();
        if len >= self.width {
            out.push_str(body);
            return;
        }
        let fill = self.width - len;
        if self.left {
            out.push_str(body);
            out.push_str(&" ".repeat(fill));
        } else if self.zero && numeric && self.precision.is_none() {
            // Zeros go after a sign or 0x prefix.
            let prefix_len = if body.starts_with("0x") || body.starts_with("0X") {
                2
            } else {
                usize::from(body.starts_with(['-', '+', ' ']))
            };
            out.push_str(&body[..prefix_len]);
            out.push_str(&"0".repeat(fill));
            out.push_str(&body[prefix_len..]);
        } else {
            out.push_str(&" ".repeat(fill));
            out.push_str(body);
        }
    }
}

fn truncate(v: usize, bits: u32) -> u64 {
    let v = v as u64;
    if bits >= 64 {
        v
    } else {
        v & ((1_u64 << bits) - 1)
    }
}

fn sign_extend(v: usize, bits: u32) -> i64 {
    let v = truncate(v, bits);
    if bits >= 64 {
        v.cast_signed()
    } else {
        let shift = 64 - bits;
        (v << shift).cast_signed() >> shift
    }
}

/// A NUL-terminated string (ANSI, or UTF-16 when `wide`) at `p`; `(null)` for a null pointer.
///
/// # Safety
/// `p` is null or points to a live terminated string of that width.
unsafe fn read_string(p: usize, wide: bool) -> String {
    if p == 0 {
        return "(null)".to_owned();
    }
    if wide {
        let mut units = Vec::new();
        let mut at = p as *const u16;
        // SAFETY: the caller's contract: readable up to and including the terminator.
        unsafe {
            while at.read_unaligned() != 0 {
                units.push(at.read_unaligned());
                at = at.add(1);
            }
        }
        String::from_utf16_lossy(&units)
    } else {
        // SAFETY: the caller's contract.
        let c = unsafe { core::ffi::CStr::from_ptr(p as *const core::ffi::c_char) };
        String::from_utf8_lossy(c.to_bytes()).into_owned()
    }
}

/// An `ANSI_STRING*` / `UNICODE_STRING*` (both: `USHORT Length`, `USHORT MaximumLength`, buffer).
///
/// # Safety
/// `p` is null or points to a live counted string whose buffer holds `Length` bytes.
unsafe fn read_counted(p: usize, wide: bool) -> String {
    if p == 0 {
        return "(null)".to_owned();
    }
    // SAFETY: the caller's contract: the header and `Length` bytes of buffer are readable.
    unsafe {
        let header = p as *const u8;
        let length = usize::from(header.cast::<u16>().read_unaligned());
        let buffer = header.add(8).cast::<*const u8>().read_unaligned();
        if buffer.is_null() {
            return String::new();
        }
        if wide {
            let mut units = Vec::with_capacity(length / 2);
            for k in 0..length / 2 {
                units.push(u16::from_le_bytes([
                    *buffer.add(2 * k),
                    *buffer.add(2 * k + 1),
                ]));
            }
            String::from_utf16_lossy(&units)
        } else {
            let bytes = core::slice::from_raw_parts(buffer, length);
            let mut s = String::new();
            let _ = write!(s, "{}", String::from_utf8_lossy(bytes));
            s
        }
    }
}

#[cfg(test)]
mod tests {
    fn fmt(format: &str, args: &[usize]) -> String {
        let mut it = args.iter().copied();
        // SAFETY: the tests pass only numbers and valid string pointers.
        unsafe { super::format(format.as_bytes(), &mut || it.next().unwrap_or(0)) }
    }

    #[test]
    fn numbers_follow_the_microsoft_dialect() {
        assert_eq!(
            fmt("%d|%u|%x|%X", &[(-5_i64) as usize, 7, 255, 255]),
            "-5|7|ff|FF"
        );
        assert_eq!(fmt("%08x|%-4d|%4d", &[0xBEEF, 3, 3]), "0000beef|3   |   3");
        assert_eq!(
            fmt("%#x|%I64x|%llu", &[16, 0x1_0000_0000, 1 << 40]),
            "0x10|100000000|1099511627776"
        );
        // %lx is 32 bits on Windows.
        assert_eq!(fmt("%lx", &[0x1_2345_6789]), "23456789");
        assert_eq!(fmt("%.3d|%5.2x", &[7, 1]), "007|   01");
        assert_eq!(fmt("100%%", &[]), "100%");
        assert_eq!(fmt("%p", &[0x1234]), "0000000000001234");
    }

    #[test]
    fn strings_ansi_wide_and_counted() {
        let ansi = c"abc";
        let wide: Vec<u16> = "wide\0".encode_utf16().collect();
        assert_eq!(
            fmt(
                "%s %ws %S %s",
                &[
                    ansi.as_ptr() as usize,
                    wide.as_ptr() as usize,
                    wide.as_ptr() as usize,
                    0
                ]
            ),
            "abc wide wide (null)"
        );
        let text: Vec<u16> = "link".encode_utf16().collect();
        let counted: [usize; 2] = [8 | (8 << 16), text.as_ptr() as usize];
        assert_eq!(fmt("%wZ", &[counted.as_ptr() as usize]), "link");
        assert_eq!(
            fmt(
                "%.2s|%-5s|",
                &[ansi.as_ptr() as usize, ansi.as_ptr() as usize]
            ),
            "ab|abc  |"
        );
    }
}

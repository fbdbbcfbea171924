//! The loader: a PE32+ driver image mapped into this process, relocated and bound to the host.
//!
//! What Windows' kernel loader does for a `.sys`, in the order it does it:
//!
//! 1. **Parse** the headers ([`PeFile::parse`]): DOS header, `PE\0\0`, the COFF header
//!    (`IMAGE_FILE_MACHINE_AMD64` only), the PE32+ optional header and the section table. Every
//!    offset is bounds-checked; a malformed image is an error, never a crash.
//! 2. **Map** it into one anonymous read-write mapping of `SizeOfImage` bytes at whatever address
//!    the system gives (kernel images are `DYNAMIC_BASE`): headers and each section's raw data are
//!    copied to their RVAs, the rest stays zero (`.bss`).
//! 3. **Relocate**: every `IMAGE_REL_BASED_DIR64` entry of the base-relocation directory gets the
//!    difference between the actual and the preferred base added; `IMAGE_REL_BASED_ABSOLUTE` is
//!    padding. Any other type is refused with its type and RVA (x64 linkers emit no other).
//! 4. **Bind imports** by (DLL, name) through a resolver (the host's table of `extern "win64"`
//!    routines, see [`crate::host`]). All imports are looked at before anything is refused: an
//!    image that imports routines the host lacks fails with ONE error listing every missing
//!    `DLL!name` ([`LoadError::MissingImports`]), never with a crash on the first call. DLL names
//!    compare case-insensitively, as Windows compares them; imports by ordinal are reported as
//!    missing (kernel images import by name).
//! 5. **Protect**: headers read-only, each section as its characteristics say
//!    (`IMAGE_SCN_MEM_READ` / `WRITE` / `EXECUTE`).
//!
//! Then the image's code range is registered with the privileged-instruction emulation
//! ([`crate::privileged`]) until the [`Image`] is dropped, which unmaps it.

use core::fmt;

/// `IMAGE_FILE_MACHINE_AMD64`.
pub const MACHINE_AMD64: u16 = 0x8664;
/// `IMAGE_NT_OPTIONAL_HDR64_MAGIC` (PE32+).
pub const PE32_PLUS_MAGIC: u16 = 0x20B;
/// `IMAGE_DIRECTORY_ENTRY_IMPORT`.
const DIRECTORY_IMPORT: usize = 1;
/// `IMAGE_DIRECTORY_ENTRY_BASERELOC`.
const DIRECTORY_BASERELOC: usize = 5;
/// `IMAGE_REL_BASED_ABSOLUTE`: padding, no fix-up.
pub const REL_BASED_ABSOLUTE: u16 = 0;
/// `IMAGE_REL_BASED_DIR64`: add the delta to the 64-bit value at the RVA.
pub const REL_BASED_DIR64: u16 = 10;
/// `IMAGE_SCN_MEM_EXECUTE`.
pub const SCN_MEM_EXECUTE: u32 = 0x2000_0000;
/// `IMAGE_SCN_MEM_READ`.
pub const SCN_MEM_READ: u32 = 0x4000_0000;
/// `IMAGE_SCN_MEM_WRITE`.
pub const SCN_MEM_WRITE: u32 = 0x8000_0000;
/// `IMAGE_ORDINAL_FLAG64`: an import by ordinal.
const ORDINAL_FLAG64: u64 = 1 << 63;
/// The page size the mapping and the protections work in.
pub const PAGE_SIZE: usize = 4096;

/// Why an image was not loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadError {
    /// The file could not be read.
    Io(String),
    /// The bytes are not a PE32+ image this loader accepts (the text says what is wrong).
    Malformed(String),
    /// A base relocation of a type other than `DIR64`/`ABSOLUTE`.
    UnsupportedRelocation {
        /// The `IMAGE_REL_BASED_*` type.
        kind: u16,
        /// The RVA it applies to.
        rva: u32,
    },
    /// Imports the host does not provide: every one of them, as (DLL, routine), in import-table
    /// order. An import by ordinal is listed as `#<ordinal>`.
    MissingImports(Vec<(String, String)>),
    /// The system refused the mapping or a protection change.
    Map(String),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Io(e) => write!(f, "cannot read the image: {e}"),
            LoadError::Malformed(e) => write!(f, "not a loadable PE32+ image: {e}"),
            LoadError::UnsupportedRelocation { kind, rva } => write!(
                f,
                "base relocation of type {kind} at RVA {rva:#x}: only IMAGE_REL_BASED_DIR64 (10) \
                 and IMAGE_REL_BASED_ABSOLUTE (0) are supported"
            ),
            LoadError::MissingImports(missing) => {
                write!(
                    f,
                    "the image imports {} routine(s) the host does not provide:",
                    missing.len()
                )?;
                for (dll, name) in missing {
                    write!(f, " {dll}!{name}")?;
                }
                Ok(())
            }
            LoadError::Map(e) => write!(f, "cannot map the image: {e}"),
        }
    }
}

impl std::error::Error for LoadError {}

fn malformed(what: impl Into<String>) -> LoadError {
    LoadError::Malformed(what.into())
}

/// Little-endian readers over a byte slice, bounds-checked.
pub(crate) fn read_u16(bytes: &[u8], at: usize) -> Result<u16, LoadError> {
    at.checked_add(2)
        .and_then(|end| bytes.get(at..end))
        .map(|b| u16::from_le_bytes([b[0], b[1]]))
        .ok_or_else(|| malformed(format!("a 16-bit field at offset {at:#x} is out of bounds")))
}

pub(crate) fn read_u32(bytes: &[u8], at: usize) -> Result<u32, LoadError> {
    at.checked_add(4)
        .and_then(|end| bytes.get(at..end))
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or_else(|| malformed(format!("a 32-bit field at offset {at:#x} is out of bounds")))
}

pub(crate) fn read_u64(bytes: &[u8], at: usize) -> Result<u64, LoadError> {
    at.checked_add(8)
        .and_then(|end| bytes.get(at..end))
        .map(|b| u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
        .ok_or_else(|| malformed(format!("a 64-bit field at offset {at:#x} is out of bounds")))
}

/// A NUL-terminated ASCII string at `at` (import names, DLL names).
fn read_cstr(bytes: &[u8], at: usize) -> Result<String, LoadError> {
    let tail = bytes
        .get(at..)
        .ok_or_else(|| malformed(format!("a name at offset {at:#x} is out of bounds")))?;
    let len = tail
        .iter()
        .position(|&b| b == 0)
        .ok_or_else(|| malformed(format!("the name at offset {at:#x} is not terminated")))?;
    Ok(String::from_utf8_lossy(&tail[..len]).into_owned())
}

/// One entry of the section table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Section {
    /// The section's name (`.text`, `.rdata`, …).
    pub name: String,
    /// Its RVA.
    pub virtual_address: u32,
    /// Its size in memory.
    pub virtual_size: u32,
    /// Where its raw data starts in the file.
    pub raw_offset: u32,
    /// Raw data bytes in the file.
    pub raw_size: u32,
    /// `IMAGE_SCN_*` flags.
    pub characteristics: u32,
}

impl Section {
    /// Bytes the section spans in memory (`VirtualSize`, or the raw size when that is zero).
    pub fn memory_size(&self) -> u32 {
        if self.virtual_size == 0 {
            self.raw_size
        } else {
            self.virtual_size
        }
    }
}

/// An (RVA, size) data directory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DataDirectory {
    /// RVA of the directory.
    pub rva: u32,
    /// Its size in bytes.
    pub size: u32,
}

/// The parsed headers of a PE32+ image (nothing mapped yet).
#[derive(Clone, Debug)]
pub struct PeFile<'a> {
    bytes: &'a [u8],
    /// `ImageBase`: the preferred base the relocations are relative to.
    pub image_base: u64,
    /// `AddressOfEntryPoint`.
    pub entry_rva: u32,
    /// `SizeOfImage`.
    pub size_of_image: u32,
    /// `SizeOfHeaders`.
    pub size_of_headers: u32,
    /// `SectionAlignment`.
    pub section_alignment: u32,
    /// The section table.
    pub sections: Vec<Section>,
    /// The import directory.
    pub imports: DataDirectory,
    /// The base-relocation directory.
    pub relocations: DataDirectory,
}

impl<'a> PeFile<'a> {
    /// Parses and checks the headers.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, LoadError> {
        if bytes.get(..2) != Some(b"MZ") {
            return Err(malformed("no MZ signature"));
        }
        let pe = read_u32(bytes, 0x3C)? as usize;
        if bytes.get(pe..pe.saturating_add(4)) != Some(b"PE\0\0") {
            return Err(malformed(format!("no PE signature at {pe:#x}")));
        }
        let coff = pe + 4;
        let machine = read_u16(bytes, coff)?;
        if machine != MACHINE_AMD64 {
            return Err(malformed(format!(
                "machine {machine:#06x}, not IMAGE_FILE_MACHINE_AMD64 ({MACHINE_AMD64:#06x})"
            )));
        }
        let section_count = usize::from(read_u16(bytes, coff + 2)?);
        let optional_size = usize::from(read_u16(bytes, coff + 16)?);
        let opt = coff + 20;
        let magic = read_u16(bytes, opt)?;
        if magic != PE32_PLUS_MAGIC {
            return Err(malformed(format!(
                "optional-header magic {magic:#x}, not PE32+ ({PE32_PLUS_MAGIC:#x})"
            )));
        }
        let entry_rva = read_u32(bytes, opt + 16)?;
        let image_base = read_u64(bytes, opt + 24)?;
        let section_alignment = read_u32(bytes, opt + 32)?;
        let size_of_image = read_u32(bytes, opt + 56)?;
        let size_of_headers = read_u32(bytes, opt + 60)?;
        let directory_count = read_u32(bytes, opt + 108)? as usize;
        let directory = |index: usize| -> Result<DataDirectory, LoadError> {
            if index >= directory_count || 112 + index * 8 + 8 > optional_size {
                return Ok(DataDirectory::default());
            }
            Ok(DataDirectory {
                rva: read_u32(bytes, opt + 112 + index * 8)?,
                size: read_u32(bytes, opt + 112 + index * 8 + 4)?,
            })
        };
        let imports = directory(DIRECTORY_IMPORT)?;
        let relocations = directory(DIRECTORY_BASERELOC)?;
        if section_alignment == 0 || !(section_alignment as usize).is_multiple_of(PAGE_SIZE) {
            return Err(malformed(format!(
                "SectionAlignment {section_alignment:#x} is not a multiple of the {PAGE_SIZE:#x}-byte \
                 page (kernel images use 0x1000)"
            )));
        }
        if size_of_image == 0 || size_of_headers == 0 || size_of_headers > size_of_image {
            return Err(malformed(format!(
                "SizeOfImage {size_of_image:#x} / SizeOfHeaders {size_of_headers:#x} are not usable"
            )));
        }
        if size_of_headers as usize > bytes.len() {
            return Err(malformed("SizeOfHeaders runs past the end of the file"));
        }
        let sections = parse_sections(bytes, opt + optional_size, section_count, size_of_image)?;
        Ok(PeFile {
            bytes,
            image_base,
            entry_rva,
            size_of_image,
            size_of_headers,
            section_alignment,
            sections,
            imports,
            relocations,
        })
    }

    /// The image as it lies in memory at its preferred base, before relocation and binding:
    /// `SizeOfImage` bytes, headers and section data at their RVAs, zeros elsewhere.
    pub fn layout(&self) -> Vec<u8> {
        let mut memory = vec![0_u8; self.size_of_image as usize];
        self.copy_into(&mut memory);
        memory
    }

    /// Copies headers and raw section data into `memory` (at least `SizeOfImage` bytes).
    fn copy_into(&self, memory: &mut [u8]) {
        let headers = self.size_of_headers as usize;
        memory[..headers].copy_from_slice(&self.bytes[..headers]);
        for s in &self.sections {
            let len = s.raw_size.min(s.memory_size()) as usize;
            let from = s.raw_offset as usize;
            let to = s.virtual_address as usize;
            memory[to..to + len].copy_from_slice(&self.bytes[from..from + len]);
        }
    }
}

/// The section table at `table`: each section inside `SizeOfImage`, page-aligned, and with its
/// raw data inside the file.
fn parse_sections(
    bytes: &[u8],
    table: usize,
    section_count: usize,
    size_of_image: u32,
) -> Result<Vec<Section>, LoadError> {
    let mut sections = Vec::with_capacity(section_count);
    for i in 0..section_count {
        let at = table + i * 40;
        let raw_name = bytes
            .get(at..at + 8)
            .ok_or_else(|| malformed("the section table runs past the end of the file"))?;
        let name_len = raw_name.iter().position(|&b| b == 0).unwrap_or(8);
        let section = Section {
            name: String::from_utf8_lossy(&raw_name[..name_len]).into_owned(),
            virtual_size: read_u32(bytes, at + 8)?,
            virtual_address: read_u32(bytes, at + 12)?,
            raw_size: read_u32(bytes, at + 16)?,
            raw_offset: read_u32(bytes, at + 20)?,
            characteristics: read_u32(bytes, at + 36)?,
        };
        let end = u64::from(section.virtual_address) + u64::from(section.memory_size());
        if end > u64::from(size_of_image) {
            return Err(malformed(format!(
                "section {} ends at RVA {end:#x}, past SizeOfImage {size_of_image:#x}",
                section.name
            )));
        }
        if !(section.virtual_address as usize).is_multiple_of(PAGE_SIZE) {
            return Err(malformed(format!(
                "section {} starts at RVA {:#x}, not on a page",
                section.name, section.virtual_address
            )));
        }
        let raw_end = u64::from(section.raw_offset) + u64::from(section.raw_size);
        if section.raw_size != 0 && raw_end > bytes.len() as u64 {
            return Err(malformed(format!(
                "section {}'s raw data runs past the end of the file",
                section.name
            )));
        }
        sections.push(section);
    }
    Ok(sections)
}

/// Applies the base relocations in `memory` (the image laid out at its RVAs) for a move by
/// `delta` bytes from the preferred base.
pub fn apply_relocations(
    memory: &mut [u8],
    directory: DataDirectory,
    delta: u64,
) -> Result<usize, LoadError> {
    let mut applied = 0;
    let start = directory.rva as usize;
    let end = start + directory.size as usize;
    if end > memory.len() {
        return Err(malformed("the relocation directory runs past SizeOfImage"));
    }
    let mut block = start;
    while block + 8 <= end {
        let page = read_u32(memory, block)?;
        let block_size = read_u32(memory, block + 4)? as usize;
        if block_size < 8 || block + block_size > end {
            return Err(malformed(format!(
                "relocation block at RVA {block:#x} has size {block_size}"
            )));
        }
        for entry_at in (block + 8..block + block_size).step_by(2) {
            let entry = read_u16(memory, entry_at)?;
            let kind = entry >> 12;
            let rva = page + u32::from(entry & 0x0FFF);
            match kind {
                REL_BASED_ABSOLUTE => {}
                REL_BASED_DIR64 => {
                    let at = rva as usize;
                    let value = read_u64(memory, at)?;
                    memory[at..at + 8].copy_from_slice(&value.wrapping_add(delta).to_le_bytes());
                    applied += 1;
                }
                _ => return Err(LoadError::UnsupportedRelocation { kind, rva }),
            }
        }
        block += block_size;
    }
    Ok(applied)
}

/// One import of the image: the DLL, the routine, and the RVA of its IAT slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Import {
    /// The DLL as the image names it (`ntoskrnl.exe`, `WDFLDR.SYS`).
    pub dll: String,
    /// The routine's name (or `#<ordinal>`).
    pub name: String,
    /// RVA of the import-address-table slot the loader fills.
    pub iat_rva: u32,
}

/// Every import of `memory` (the image laid out at its RVAs), in import-table order.
pub fn imports(memory: &[u8], directory: DataDirectory) -> Result<Vec<Import>, LoadError> {
    let mut all = Vec::new();
    if directory.rva == 0 {
        return Ok(all);
    }
    let mut descriptor = directory.rva as usize;
    loop {
        let lookup = read_u32(memory, descriptor)?;
        let name_rva = read_u32(memory, descriptor + 12)?;
        let first_thunk = read_u32(memory, descriptor + 16)?;
        if lookup == 0 && name_rva == 0 && first_thunk == 0 {
            break;
        }
        let dll = read_cstr(memory, name_rva as usize)?;
        let names = if lookup != 0 { lookup } else { first_thunk };
        for i in 0.. {
            let thunk = read_u64(memory, names as usize + i * 8)?;
            if thunk == 0 {
                break;
            }
            let name = if thunk & ORDINAL_FLAG64 != 0 {
                format!("#{}", thunk & 0xFFFF)
            } else {
                // IMAGE_IMPORT_BY_NAME: a 16-bit hint, then the name.
                let by_name = usize::try_from(thunk & 0x7FFF_FFFF)
                    .map_err(|_| malformed("import name RVA out of range"))?;
                read_cstr(memory, by_name + 2)?
            };
            let iat_rva = u32::try_from(first_thunk as usize + i * 8)
                .map_err(|_| malformed("import address table out of range"))?;
            all.push(Import {
                dll: dll.clone(),
                name,
                iat_rva,
            });
        }
        descriptor += 20;
    }
    Ok(all)
}

/// Resolves every import with `resolve(dll, name)` and writes the addresses into the IAT of
/// `memory`. Nothing is written unless every import resolves; otherwise the error lists every
/// missing one.
pub fn bind_imports(
    memory: &mut [u8],
    imports: &[Import],
    resolve: &dyn Fn(&str, &str) -> Option<usize>,
) -> Result<(), LoadError> {
    let mut resolved = Vec::with_capacity(imports.len());
    let mut missing = Vec::new();
    for import in imports {
        match resolve(&import.dll, &import.name) {
            Some(address) => resolved.push((import.iat_rva as usize, address)),
            None => missing.push((import.dll.clone(), import.name.clone())),
        }
    }
    if !missing.is_empty() {
        return Err(LoadError::MissingImports(missing));
    }
    for (at, address) in resolved {
        if at + 8 > memory.len() {
            return Err(malformed("an import address table slot is out of bounds"));
        }
        memory[at..at + 8].copy_from_slice(&(address as u64).to_le_bytes());
    }
    Ok(())
}

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
pub use mapped::Image;

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
mod mapped {
    use super::{
        apply_relocations, bind_imports, imports, Import, LoadError, PeFile, PAGE_SIZE,
        SCN_MEM_EXECUTE, SCN_MEM_READ, SCN_MEM_WRITE,
    };
    use crate::privileged;

    /// A loaded image: mapped, relocated, bound and protected. Unmapped on drop.
    #[derive(Debug)]
    pub struct Image {
        // INVARIANT: `base` is the start of a live mapping of `size` bytes that this value owns
        // (created by `mmap` in `load`, removed by `munmap` in `drop`).
        base: *mut u8,
        size: usize,
        entry: usize,
        preferred_base: u64,
        imports: Vec<Import>,
        sections: Vec<super::Section>,
        range: privileged::RangeToken,
    }

    // SAFETY: the mapping is plain process memory with no thread affinity; `Image` hands out only
    // addresses and shared reads of the (read-only after loading) headers.
    unsafe impl Send for Image {}
    // SAFETY: as above; no method mutates through `&self`.
    unsafe impl Sync for Image {}

    impl Image {
        /// Loads `bytes`: map, copy, relocate, bind through `resolve`, protect (see the
        /// [module documentation](super)).
        pub fn load(
            bytes: &[u8],
            resolve: &dyn Fn(&str, &str) -> Option<usize>,
        ) -> Result<Image, LoadError> {
            let pe = PeFile::parse(bytes)?;
            let size = (pe.size_of_image as usize).div_ceil(PAGE_SIZE) * PAGE_SIZE;
            // SAFETY: an anonymous private mapping at an address of the system's choosing; it
            // overlaps nothing and the result is checked below.
            let raw = unsafe {
                libc::mmap(
                    core::ptr::null_mut(),
                    size,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            if raw == libc::MAP_FAILED {
                return Err(LoadError::Map(std::io::Error::last_os_error().to_string()));
            }
            let mut image = Image {
                base: raw.cast::<u8>(),
                size,
                entry: raw as usize + pe.entry_rva as usize,
                preferred_base: pe.image_base,
                imports: Vec::new(),
                sections: pe.sections.clone(),
                range: privileged::RangeToken::none(),
            };
            {
                // SAFETY: the mapping is `size` bytes of readable and writable memory owned by
                // `image`; no other reference to it exists while this slice lives.
                let memory = unsafe { core::slice::from_raw_parts_mut(image.base, size) };
                pe.copy_into(memory);
                let delta = (image.base as u64).wrapping_sub(pe.image_base);
                apply_relocations(memory, pe.relocations, delta)?;
                image.imports = imports(memory, pe.imports)?;
                bind_imports(memory, &image.imports, resolve)?;
            }
            image.protect(&pe)?;
            image.range = privileged::register_image_range(image.base as usize, size);
            Ok(image)
        }

        fn protect(&self, pe: &PeFile<'_>) -> Result<(), LoadError> {
            let headers = (pe.size_of_headers as usize).div_ceil(PAGE_SIZE) * PAGE_SIZE;
            self.mprotect(0, headers, libc::PROT_READ)?;
            for s in &pe.sections {
                let len = (s.memory_size() as usize).div_ceil(PAGE_SIZE) * PAGE_SIZE;
                if len == 0 {
                    continue;
                }
                let mut prot = libc::PROT_NONE;
                if s.characteristics & SCN_MEM_READ != 0 {
                    prot |= libc::PROT_READ;
                }
                if s.characteristics & SCN_MEM_WRITE != 0 {
                    prot |= libc::PROT_WRITE;
                }
                if s.characteristics & SCN_MEM_EXECUTE != 0 {
                    prot |= libc::PROT_EXEC;
                }
                self.mprotect(s.virtual_address as usize, len, prot)?;
            }
            Ok(())
        }

        fn mprotect(&self, offset: usize, len: usize, prot: i32) -> Result<(), LoadError> {
            let len = len.min(self.size.saturating_sub(offset));
            if len == 0 {
                return Ok(());
            }
            // SAFETY: `offset..offset + len` lies inside the mapping `self` owns (clamped above)
            // and starts on a page (headers at 0, sections at page-aligned RVAs, checked by
            // `PeFile::parse`); changing its protection affects no Rust-visible reference (the
            // only slice over it ended in `load`).
            let rc = unsafe { libc::mprotect(self.base.add(offset).cast(), len, prot) };
            if rc != 0 {
                return Err(LoadError::Map(format!(
                    "mprotect at offset {offset:#x}: {}",
                    std::io::Error::last_os_error()
                )));
            }
            Ok(())
        }

        /// The address the image was mapped at.
        pub fn base(&self) -> usize {
            self.base as usize
        }

        /// Bytes mapped (`SizeOfImage`, rounded up to pages).
        pub fn size(&self) -> usize {
            self.size
        }

        /// The entry point's address (`AddressOfEntryPoint` + base).
        pub fn entry(&self) -> usize {
            self.entry
        }

        /// The preferred `ImageBase` of the file.
        pub fn preferred_base(&self) -> u64 {
            self.preferred_base
        }

        /// The imports, as bound.
        pub fn imports(&self) -> &[Import] {
            &self.imports
        }

        /// The section table.
        pub fn sections(&self) -> &[super::Section] {
            &self.sections
        }

        /// The address of `rva` in the mapping.
        pub fn address_of(&self, rva: u32) -> usize {
            self.base as usize + rva as usize
        }

        /// Reads the 64-bit value at `rva` (e.g. a relocated pointer or an IAT slot), if it lies
        /// in a readable part of the image.
        pub fn read_u64(&self, rva: u32) -> Option<u64> {
            let at = rva as usize;
            if at.checked_add(8)? > self.size || !self.is_readable(at) {
                return None;
            }
            // SAFETY: `at..at + 8` is inside the mapping and in a readable page (checked
            // above); an unaligned read is allowed by `read_unaligned`.
            Some(unsafe { self.base.add(at).cast::<u64>().read_unaligned() })
        }

        fn is_readable(&self, at: usize) -> bool {
            let headers = self.sections.iter().map(|s| s.virtual_address).min();
            if headers.is_some_and(|first| at < first as usize) {
                return true;
            }
            self.sections.iter().any(|s| {
                let start = s.virtual_address as usize;
                let end = start + (s.memory_size() as usize).div_ceil(PAGE_SIZE) * PAGE_SIZE;
                (start..end).contains(&at) && s.characteristics & SCN_MEM_READ != 0
            })
        }
    }

    impl Drop for Image {
        fn drop(&mut self) {
            privileged::unregister_image_range(&self.range);
            // SAFETY: `base`/`size` describe the mapping this value owns (type invariant);
            // nothing refers into it once the image is dropped (the host leaks an image whose
            // code may still be on a thread's stack instead of dropping it).
            unsafe {
                libc::munmap(self.base.cast(), self.size);
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds a minimal PE32+ image by hand: `.text` (code), `.rdata` (imports), `.data` (a
    /// pointer to itself the relocation fixes), `.reloc`.
    pub(crate) struct TestImage {
        pub bytes: Vec<u8>,
        /// RVA of the pointer in `.data` that holds `ImageBase + DATA_RVA` before relocation.
        pub pointer_rva: u32,
        /// (dll, name, IAT RVA) of each import.
        pub iat: Vec<(String, String, u32)>,
    }

    pub(crate) const IMAGE_BASE: u64 = 0x1_4000_0000;
    const TEXT_RVA: u32 = 0x1000;
    const RDATA_RVA: u32 = 0x2000;
    const DATA_RVA: u32 = 0x3000;
    const RELOC_RVA: u32 = 0x4000;

    fn put_u16(b: &mut [u8], at: usize, v: u16) {
        b[at..at + 2].copy_from_slice(&v.to_le_bytes());
    }
    fn put_u32(b: &mut [u8], at: usize, v: u32) {
        b[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }
    fn put_u64(b: &mut [u8], at: usize, v: u64) {
        b[at..at + 8].copy_from_slice(&v.to_le_bytes());
    }

    /// `code` goes at the entry point; `imports` are (dll, [names]); `reloc_kind` is the type of
    /// the one relocation entry (10 = DIR64).
    pub(crate) fn build(code: &[u8], imports: &[(&str, &[&str])], reloc_kind: u16) -> TestImage {
        // File layout: headers 0x400 bytes, then each section's raw data 0x200 bytes apart.
        let file_align = 0x200_usize;
        let headers = 0x400_usize;
        let sections = [
            (".text", TEXT_RVA, SCN_MEM_READ | SCN_MEM_EXECUTE | 0x20),
            (".rdata", RDATA_RVA, SCN_MEM_READ | 0x40),
            (".data", DATA_RVA, SCN_MEM_READ | SCN_MEM_WRITE | 0x40),
            (".reloc", RELOC_RVA, SCN_MEM_READ | 0x40),
        ];
        let raw_size = 0x200_usize;
        let mut bytes = vec![0_u8; headers + sections.len() * raw_size];
        bytes[0..2].copy_from_slice(b"MZ");
        let pe = 0x80;
        put_u32(&mut bytes, 0x3C, pe as u32);
        bytes[pe..pe + 4].copy_from_slice(b"PE\0\0");
        let coff = pe + 4;
        put_u16(&mut bytes, coff, MACHINE_AMD64);
        put_u16(&mut bytes, coff + 2, sections.len() as u16);
        let optional_size = 112 + 16 * 8;
        put_u16(&mut bytes, coff + 16, optional_size as u16);
        put_u16(&mut bytes, coff + 18, 0x2022);
        let opt = coff + 20;
        put_u16(&mut bytes, opt, PE32_PLUS_MAGIC);
        put_u32(&mut bytes, opt + 16, TEXT_RVA);
        put_u64(&mut bytes, opt + 24, IMAGE_BASE);
        put_u32(&mut bytes, opt + 32, 0x1000);
        put_u32(&mut bytes, opt + 36, file_align as u32);
        put_u32(&mut bytes, opt + 56, RELOC_RVA + 0x1000);
        put_u32(&mut bytes, opt + 60, headers as u32);
        put_u32(&mut bytes, opt + 108, 16);
        let table = opt + optional_size;
        for (i, (name, rva, ch)) in sections.iter().enumerate() {
            let at = table + i * 40;
            bytes[at..at + name.len()].copy_from_slice(name.as_bytes());
            put_u32(&mut bytes, at + 8, raw_size as u32);
            put_u32(&mut bytes, at + 12, *rva);
            put_u32(&mut bytes, at + 16, raw_size as u32);
            put_u32(&mut bytes, at + 20, (headers + i * raw_size) as u32);
            put_u32(&mut bytes, at + 36, *ch);
        }
        let file_of = |rva: u32| -> usize {
            let i = sections.iter().position(|s| s.1 == rva & !0xFFF).unwrap();
            headers + i * raw_size + (rva & 0xFFF) as usize
        };
        // .text
        let text = file_of(TEXT_RVA);
        bytes[text..text + code.len()].copy_from_slice(code);
        // .rdata: descriptors, then per DLL: name, lookup table, IAT, hint/name entries.
        let mut cursor = RDATA_RVA + 20 * (imports.len() as u32 + 1);
        let mut iat = Vec::new();
        for (d, (dll, names)) in imports.iter().enumerate() {
            let desc = file_of(RDATA_RVA) + d * 20;
            let name_rva = cursor;
            let at = file_of(name_rva);
            bytes[at..at + dll.len()].copy_from_slice(dll.as_bytes());
            cursor += (dll.len() as u32 + 1).next_multiple_of(8);
            let lookup_rva = cursor;
            cursor += 8 * (names.len() as u32 + 1);
            let iat_rva = cursor;
            cursor += 8 * (names.len() as u32 + 1);
            for (n, name) in names.iter().enumerate() {
                let hint_rva = cursor;
                let at = file_of(hint_rva) + 2;
                bytes[at..at + name.len()].copy_from_slice(name.as_bytes());
                cursor += (2 + name.len() as u32 + 1).next_multiple_of(2);
                put_u64(&mut bytes, file_of(lookup_rva) + n * 8, u64::from(hint_rva));
                put_u64(&mut bytes, file_of(iat_rva) + n * 8, u64::from(hint_rva));
                iat.push((dll.to_string(), name.to_string(), iat_rva + n as u32 * 8));
            }
            put_u32(&mut bytes, desc, lookup_rva);
            put_u32(&mut bytes, desc + 12, name_rva);
            put_u32(&mut bytes, desc + 16, iat_rva);
        }
        assert!(
            cursor < RDATA_RVA + raw_size as u32,
            "test imports too large"
        );
        put_u32(&mut bytes, opt + 112 + 8, RDATA_RVA);
        put_u32(
            &mut bytes,
            opt + 112 + 8 + 4,
            20 * (imports.len() as u32 + 1),
        );
        // .data: a pointer to .data + 0x10 at its preferred address.
        let pointer_rva = DATA_RVA;
        put_u64(
            &mut bytes,
            file_of(DATA_RVA),
            IMAGE_BASE + u64::from(DATA_RVA) + 0x10,
        );
        // .reloc: one block for the .data page with the entry and an ABSOLUTE pad.
        let reloc = file_of(RELOC_RVA);
        put_u32(&mut bytes, reloc, DATA_RVA);
        put_u32(&mut bytes, reloc + 4, 12);
        put_u16(&mut bytes, reloc + 8, reloc_kind << 12); // offset 0 in the page
        put_u16(&mut bytes, reloc + 10, 0);
        put_u32(&mut bytes, opt + 112 + 5 * 8, RELOC_RVA);
        put_u32(&mut bytes, opt + 112 + 5 * 8 + 4, 12);
        TestImage {
            bytes,
            pointer_rva,
            iat,
        }
    }

    #[test]
    fn parses_the_hand_built_image() {
        let t = build(&[0xC3], &[("ntoskrnl.exe", &["KeBugCheckEx"])], 10);
        let pe = PeFile::parse(&t.bytes).unwrap();
        assert_eq!(pe.image_base, IMAGE_BASE);
        assert_eq!(pe.entry_rva, TEXT_RVA);
        let names: Vec<&str> = pe.sections.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, [".text", ".rdata", ".data", ".reloc"]);
        let memory = pe.layout();
        let all = imports(&memory, pe.imports).unwrap();
        assert_eq!(
            all,
            [Import {
                dll: "ntoskrnl.exe".into(),
                name: "KeBugCheckEx".into(),
                iat_rva: t.iat[0].2
            }]
        );
    }

    #[test]
    fn relocation_adds_the_delta_in_the_layout() {
        let t = build(&[0xC3], &[], 10);
        let pe = PeFile::parse(&t.bytes).unwrap();
        let mut memory = pe.layout();
        let applied = apply_relocations(&mut memory, pe.relocations, 0x1000_0000).unwrap();
        assert_eq!(applied, 1);
        let value = read_u64(&memory, t.pointer_rva as usize).unwrap();
        assert_eq!(value, IMAGE_BASE + u64::from(DATA_RVA) + 0x10 + 0x1000_0000);
    }

    #[test]
    fn other_relocation_types_are_refused_with_type_and_rva() {
        // IMAGE_REL_BASED_HIGHLOW (3): an x86 fix-up, never in an x64 image.
        let t = build(&[0xC3], &[], 3);
        let pe = PeFile::parse(&t.bytes).unwrap();
        let mut memory = pe.layout();
        let err = apply_relocations(&mut memory, pe.relocations, 0x1000).unwrap_err();
        assert_eq!(
            err,
            LoadError::UnsupportedRelocation {
                kind: 3,
                rva: DATA_RVA
            }
        );
        assert!(err.to_string().contains("type 3 at RVA 0x3000"), "{err}");
    }

    #[test]
    fn every_missing_import_is_listed_in_one_error() {
        let t = build(
            &[0xC3],
            &[
                ("ntoskrnl.exe", &["KeSetEvent", "ZwOpenKey", "KeBugCheckEx"]),
                ("WDFLDR.SYS", &["WdfVersionBindClass"]),
            ],
            10,
        );
        let pe = PeFile::parse(&t.bytes).unwrap();
        let mut memory = pe.layout();
        let all = imports(&memory, pe.imports).unwrap();
        let have = |dll: &str, name: &str| {
            (dll.eq_ignore_ascii_case("NTOSKRNL.EXE") && name != "ZwOpenKey").then_some(0x1234)
        };
        let err = bind_imports(&mut memory, &all, &have).unwrap_err();
        assert_eq!(
            err,
            LoadError::MissingImports(vec![
                ("ntoskrnl.exe".into(), "ZwOpenKey".into()),
                ("WDFLDR.SYS".into(), "WdfVersionBindClass".into()),
            ])
        );
        assert_eq!(
            err.to_string(),
            "the image imports 2 routine(s) the host does not provide: ntoskrnl.exe!ZwOpenKey \
             WDFLDR.SYS!WdfVersionBindClass"
        );
        // Nothing was written: the IAT still holds the hint/name RVA.
        let slot = read_u64(&memory, t.iat[0].2 as usize).unwrap();
        assert!(slot < 0x1_0000, "IAT written although an import is missing");
    }

    #[test]
    fn malformed_headers_are_errors_not_crashes() {
        assert!(matches!(PeFile::parse(b"MZ"), Err(LoadError::Malformed(_))));
        assert!(matches!(
            PeFile::parse(b"ELF"),
            Err(LoadError::Malformed(_))
        ));
        let mut t = build(&[0xC3], &[], 10);
        t.bytes[0x84] = 0x4C; // IMAGE_FILE_MACHINE_I386
        t.bytes[0x85] = 0x01;
        let err = PeFile::parse(&t.bytes).unwrap_err();
        assert!(err.to_string().contains("0x014c"), "{err}");
        let t = build(&[0xC3], &[], 10);
        for cut in [0x90, 0x180, 0x300] {
            let _ = PeFile::parse(&t.bytes[..cut]); // must not panic
        }
    }

    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    #[test]
    fn the_mapped_image_is_relocated_bound_and_executable() {
        // mov eax, 42; ret
        let t = build(
            &[0xB8, 42, 0, 0, 0, 0xC3],
            &[("ntoskrnl.exe", &["KeBugCheckEx", "KeSetEvent"])],
            10,
        );
        let resolve = |_: &str, name: &str| match name {
            "KeBugCheckEx" => Some(0xAAAA_0000),
            "KeSetEvent" => Some(0xBBBB_0000),
            _ => None,
        };
        let image = Image::load(&t.bytes, &resolve).unwrap();
        let delta = (image.base() as u64).wrapping_sub(IMAGE_BASE);
        assert_eq!(
            image.read_u64(t.pointer_rva),
            Some(IMAGE_BASE + u64::from(DATA_RVA) + 0x10 + delta)
        );
        assert_eq!(image.read_u64(t.iat[0].2), Some(0xAAAA_0000));
        assert_eq!(image.read_u64(t.iat[1].2), Some(0xBBBB_0000));
        // SAFETY: the entry is the `mov eax, 42; ret` above, in an executable section of the
        // live image; it takes no arguments and touches nothing else.
        let entry: extern "win64" fn() -> u32 = unsafe { core::mem::transmute(image.entry()) };
        assert_eq!(entry(), 42);
    }

    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    #[test]
    fn a_missing_import_maps_nothing_for_long() {
        let t = build(&[0xC3], &[("HAL.dll", &["KeStallExecutionProcessor"])], 10);
        let err = Image::load(&t.bytes, &|_: &str, _: &str| None).unwrap_err();
        assert_eq!(
            err,
            LoadError::MissingImports(vec![("HAL.dll".into(), "KeStallExecutionProcessor".into())])
        );
    }
}

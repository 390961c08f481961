//! Symbols from a firmware ELF: the function a PC is in, and where a named object lives.
//!
//! The probe's status lines, the twin's unmodelled-access reports and the beacon-in-RAM reader
//! use this. Rust names are demangled (`bootproof_app::run::{{closure}}`, without the hash).

use object::{Object, ObjectSymbol, SymbolKind};

/// One symbol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Symbol {
    /// Demangled name.
    pub name: String,
    /// Start address (the Thumb bit cleared for functions).
    pub address: u32,
    /// Size in bytes (0 when the ELF does not say).
    pub size: u32,
    /// A function (text) rather than data.
    pub function: bool,
}

/// The symbol table of one ELF, sorted by address.
#[derive(Debug, Clone, Default)]
pub struct Symbols {
    list: Vec<Symbol>,
}

/// Why symbols could not be read.
#[derive(Debug, thiserror::Error)]
#[error(
    "{name}: not an ELF with a symbol table ({message}); build it with debug symbols, or give the ELF rather than a .bin/.hex"
)]
pub struct SymbolError {
    /// File name.
    pub name: String,
    /// Parser message.
    pub message: String,
}

impl Symbols {
    /// Parse the ELF `bytes` (`name` is for messages).
    pub fn from_elf(name: &str, bytes: &[u8]) -> Result<Symbols, SymbolError> {
        let file = object::File::parse(bytes).map_err(|e| SymbolError { name: name.into(), message: e.to_string() })?;
        let mut list: Vec<Symbol> = file
            .symbols()
            .filter(|s| matches!(s.kind(), SymbolKind::Text | SymbolKind::Data) && s.address() != 0)
            .filter_map(|s| {
                let raw = s.name().ok()?;
                if raw.is_empty() || raw.starts_with('$') {
                    return None;
                }
                let function = s.kind() == SymbolKind::Text;
                let address = (s.address() as u32) & if function { !1 } else { !0 };
                Some(Symbol { name: demangle(raw), address, size: s.size() as u32, function })
            })
            .collect();
        list.sort_by_key(|s| (s.address, std::cmp::Reverse(s.size)));
        list.dedup_by(|a, b| a.address == b.address && a.name == b.name);
        Ok(Symbols { list })
    }

    /// Whether there are no symbols.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The symbol `addr` falls in, and the offset into it. A symbol without a size claims the
    /// addresses up to the next one.
    pub fn lookup(&self, addr: u32) -> Option<(&Symbol, u32)> {
        let i = self.list.partition_point(|s| s.address <= addr);
        // Prefer the innermost symbol that covers addr; fall back to a size-less one.
        self.list[..i].iter().rev().take(8).find_map(|s| {
            let off = addr - s.address;
            (off < s.size || (s.size == 0 && off < 0x1000)).then_some((s, off))
        })
    }

    /// `name+0x12` for `addr`, or None.
    pub fn describe(&self, addr: u32) -> Option<String> {
        self.lookup(addr).map(|(s, off)| if off == 0 { s.name.clone() } else { format!("{}+{off:#x}", s.name) })
    }

    /// The address of the symbol called exactly `name` (demangled, or the raw export name).
    pub fn address_of(&self, name: &str) -> Option<u32> {
        self.list.iter().find(|s| s.name == name).map(|s| s.address)
    }
}

fn demangle(raw: &str) -> String {
    format!("{:#}", rustc_demangle::demangle(raw))
}

#[cfg(test)]
mod tests {
    use super::*;
    use object::write::{Object as WObject, StandardSection, Symbol as WSymbol, SymbolSection};
    use object::{Architecture, BinaryFormat, Endianness, SymbolFlags, SymbolScope};

    fn elf() -> Vec<u8> {
        let mut o = WObject::new(BinaryFormat::Elf, Architecture::Arm, Endianness::Little);
        let text = o.section_id(StandardSection::Text);
        o.append_section_data(text, &[0u8; 0x100], 4);
        let data = o.section_id(StandardSection::Data);
        o.append_section_data(data, &[0u8; 0x40], 4);
        let mut add = |name: &[u8], value, size, kind, section| {
            o.add_symbol(WSymbol {
                name: name.to_vec(),
                value,
                size,
                kind,
                scope: SymbolScope::Linkage,
                weak: false,
                section: SymbolSection::Section(section),
                flags: SymbolFlags::None,
            });
        };
        add(b"_ZN13bootproof_app3run17h0123456789abcdefE", 0x11, 0x40, SymbolKind::Text, text);
        add(b"main", 0x61, 0x20, SymbolKind::Text, text);
        add(b"BOOTPROOF_BEACON", 0x2000_0020, 0x20, SymbolKind::Data, data);
        o.write().unwrap()
    }

    #[test]
    fn lookup_demangles_and_clears_the_thumb_bit() {
        let s = Symbols::from_elf("t.elf", &elf()).unwrap();
        assert_eq!(s.describe(0x10).as_deref(), Some("bootproof_app::run"));
        assert_eq!(s.describe(0x24).as_deref(), Some("bootproof_app::run+0x14"));
        assert_eq!(s.describe(0x60).as_deref(), Some("main"));
        assert_eq!(s.describe(0x90), None, "past the end of main and of every symbol");
        assert_eq!(s.address_of("BOOTPROOF_BEACON"), Some(0x2000_0020));
        assert_eq!(s.address_of("nothing"), None);
    }

    #[test]
    fn a_non_elf_is_refused_with_the_fix() {
        let e = Symbols::from_elf("app.bin", b"\x00\x01\x02\x03").unwrap_err().to_string();
        assert!(e.contains("app.bin") && e.contains("give the ELF"), "{e}");
    }
}

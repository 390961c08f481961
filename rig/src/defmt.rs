//! defmt log decoding of RTT bytes against the firmware ELF (defmt-decoder).

use std::fmt::Write as _;

use crate::error::ProbeError;

/// Turns RTT up-channel bytes into log lines, given the firmware's ELF.
pub struct DefmtLog {
    table: &'static defmt_decoder::Table,
    locations: Option<defmt_decoder::Locations>,
    decoder: Box<dyn defmt_decoder::StreamDecoder + Send + Sync + 'static>,
}

impl DefmtLog {
    /// Parse the defmt table of `elf`. The table lives as long as the process (decoders borrow
    /// it; a harness decodes one or two ELFs per run).
    pub fn from_elf(elf: &[u8]) -> Result<DefmtLog, ProbeError> {
        let table = defmt_decoder::Table::parse(elf)
            .map_err(|e| ProbeError::Rtt(format!("cannot read the defmt table: {e}")))?
            .ok_or_else(|| {
                ProbeError::Rtt(
                    "the ELF has no defmt table: was the firmware built with defmt and its linker script (defmt.x)?"
                        .into(),
                )
            })?;
        let table: &'static defmt_decoder::Table = Box::leak(Box::new(table));
        let locations = table.get_locations(elf).ok().filter(|l| !l.is_empty());
        Ok(DefmtLog { table, locations, decoder: table.new_stream_decoder() })
    }

    /// Start a new stream (after a target reset: the firmware's RTT buffer starts over, and a
    /// frame cut by the reset must not garble the next ones).
    pub fn restart(&mut self) {
        self.decoder = self.table.new_stream_decoder();
    }

    /// Feed bytes; returns the complete log lines decoded so far.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<String>, ProbeError> {
        self.decoder.received(bytes);
        let mut out = Vec::new();
        loop {
            match self.decoder.decode() {
                Ok(frame) => {
                    let mut line = String::new();
                    if let Some(level) = frame.level() {
                        let _ = write!(line, "{} ", level.as_str().to_uppercase());
                    }
                    let _ = write!(line, "{}", frame.display_message());
                    if let Some(loc) = self.locations.as_ref().and_then(|l| l.get(&frame.index())) {
                        let _ = write!(line, " ({}:{})", loc.file.display(), loc.line);
                    }
                    out.push(line);
                }
                Err(defmt_decoder::DecodeError::UnexpectedEof) => return Ok(out),
                Err(defmt_decoder::DecodeError::Malformed) if self.table.encoding().can_recover() => continue,
                Err(defmt_decoder::DecodeError::Malformed) => {
                    return Err(ProbeError::Rtt(
                        "malformed defmt frame with the raw encoding (cannot resynchronise): was the RTT buffer overwritten? Use the rzcobs encoding".into(),
                    ));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object::write::{Object, Symbol, SymbolSection};
    use object::{Architecture, BinaryFormat, Endianness, SymbolFlags, SymbolKind, SymbolScope};

    /// An ELF with one defmt log string at index 0x20, as defmt's linker output would carry it.
    fn elf() -> Vec<u8> {
        let mut obj = Object::new(BinaryFormat::Elf, Architecture::Arm, Endianness::Little);
        let section = obj.add_section(Vec::new(), b".defmt.0".to_vec(), object::SectionKind::ReadOnlyData);
        obj.set_section_data(section, vec![0], 1);
        let name = r#"{"package":"fw","tag":"defmt_info","data":"stage={=u8} rsr={=u32:#x}","disambiguator":"1","crate_name":"fw"}"#;
        obj.add_symbol(Symbol {
            name: name.as_bytes().to_vec(),
            value: 0x20,
            size: 1,
            kind: SymbolKind::Data,
            scope: SymbolScope::Linkage,
            weak: false,
            section: SymbolSection::Section(section),
            flags: SymbolFlags::None,
        });
        for s in ["_defmt_version_ = 4", "_defmt_encoding_ = raw"] {
            obj.add_symbol(Symbol {
                name: s.as_bytes().to_vec(),
                value: 0,
                size: 0,
                kind: SymbolKind::Data,
                scope: SymbolScope::Compilation,
                weak: false,
                section: SymbolSection::Absolute,
                flags: SymbolFlags::None,
            });
        }
        obj.write().unwrap()
    }

    #[test]
    fn decodes_frames_split_across_reads() {
        let mut log = DefmtLog::from_elf(&elf()).unwrap();
        // Raw encoding: 2-byte index, then the arguments.
        let frame = [0x20, 0x00, 0x02, 0x00, 0x00, 0xFA, 0x00];
        assert!(log.feed(&frame[..3]).unwrap().is_empty(), "incomplete frame");
        let lines = log.feed(&frame[3..]).unwrap();
        assert_eq!(lines, vec!["INFO stage=2 rsr=0xfa0000"]);
    }

    #[test]
    fn an_elf_without_defmt_says_what_is_missing() {
        let mut obj = Object::new(BinaryFormat::Elf, Architecture::Arm, Endianness::Little);
        obj.add_section(Vec::new(), b".text".to_vec(), object::SectionKind::Text);
        let e = DefmtLog::from_elf(&obj.write().unwrap()).err().unwrap().to_string();
        assert!(e.contains("no defmt table"), "{e}");
    }
}

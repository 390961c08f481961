//! bootproof's own firmware for a board, built from source on first use.
//!
//! | board | workspace | what |
//! |---|---|---|
//! | stm32h723zg (NUCLEO-H723ZG) | `firmware-under-test/stm32h7` | bootproof's bootloader (sector 0); the application (`app`, at the start of flash), its builds for slot A and B of bootproof's bootloader, and their `-noconfirm` builds whose trial always fails; beacon on CAN FD, the console and RAM |
//! | stm32f446re, stm32g071rb | `firmware-under-test/minimal` | the minimal beacon firmware: reset flags, RAM canary, beacon in RAM for the probe |
//!
//! The same ELF files are flashed on a real rig and executed by the twin's emulated core.
//!
//! The first use in a process runs `cargo build --release` in the workspace (a no-op when it
//! is up to date); `.ci/run` builds everything once up front. Set `BOOTPROOF_FIRMWARE_DIR` to
//! the directory holding both workspaces (default: `firmware-under-test/` of this repository)
//! and `BOOTPROOF_FIRMWARE_PREBUILT=1` to use the ELF files already in their `target/`
//! directories without running cargo (a Pi without the embedded toolchain).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use boot_core::layout::{Layout, SlotId};
use bootproof_fixtures::BoardProfile;
use bootproof_rig::image::FirmwareImage;
use bootproof_rig::symbols::Symbols;
use fut_image::ImageVersion;
use fut_image::keys::SigningKey;
use fut_image::sign::{SignOptions, sign};

/// Where the firmware workspaces are in this repository.
pub const DEFAULT_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../firmware-under-test");

/// Which binary of bootproof's firmware.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Binary {
    /// bootproof's bootloader, in sector 0.
    Bootloader,
    /// The application at the start of flash, no bootloader.
    Flash,
    /// In a slot of bootproof's bootloader; confirms itself when it runs as a trial.
    Slot(SlotId),
    /// In a slot, never confirming itself (a broken update: its trial fails).
    SlotNoConfirm(SlotId),
}

impl Binary {
    /// The binary's name in the workspace.
    pub fn bin(self) -> &'static str {
        match self {
            Binary::Bootloader => "bootloader",
            Binary::Flash => "app",
            Binary::Slot(SlotId::A) => "app-slot-a",
            Binary::Slot(SlotId::B) => "app-slot-b",
            Binary::SlotNoConfirm(SlotId::A) => "app-slot-a-noconfirm",
            Binary::SlotNoConfirm(SlotId::B) => "app-slot-b-noconfirm",
        }
    }

    /// Every build.
    pub const ALL: [Binary; 6] = [
        Binary::Bootloader,
        Binary::Flash,
        Binary::Slot(SlotId::A),
        Binary::Slot(SlotId::B),
        Binary::SlotNoConfirm(SlotId::A),
        Binary::SlotNoConfirm(SlotId::B),
    ];
}

/// Why the firmware is not available.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FirmwareError {
    /// The workspace is not where it should be.
    #[error(
        "bootproof's firmware workspace is not at {0}: run from a clone of the repository, or set BOOTPROOF_FIRMWARE_DIR to its firmware-under-test directory"
    )]
    NoWorkspace(PathBuf),
    /// The board's firmware has no such build.
    #[error(
        "bootproof's firmware for {board} has no `{build}` build: it has only the application at the start of flash"
    )]
    NoSuchBuild {
        /// Board.
        board: String,
        /// The build asked for.
        build: &'static str,
    },
    /// cargo could not be started.
    #[error("cannot run cargo to build the firmware in {dir}: {message}; install Rust with rustup (https://rustup.rs)")]
    NoCargo {
        /// Workspace.
        dir: PathBuf,
        /// OS error.
        message: String,
    },
    /// The build failed.
    #[error("building the firmware in {dir} failed{hint}:\n{tail}")]
    Build {
        /// Workspace.
        dir: PathBuf,
        /// What to do, when recognisable.
        hint: String,
        /// The end of cargo's output.
        tail: String,
    },
    /// An ELF is missing or unreadable.
    #[error("{path}: {message}")]
    Elf {
        /// File.
        path: PathBuf,
        /// What is wrong and what to do.
        message: String,
    },
    /// Signing failed.
    #[error("signing {what}: {message}")]
    Sign {
        /// Which build.
        what: String,
        /// Why.
        message: String,
    },
}

/// bootproof's firmware for one board.
#[derive(Debug, Clone)]
pub struct BoardFirmware {
    /// The board profile it is for.
    pub board: String,
    /// The workspace.
    pub dir: PathBuf,
    /// The embedded target it builds for.
    pub target: &'static str,
    /// The minimal firmware's binary, or None for the full application's workspace.
    minimal: Option<&'static str>,
}

/// The firmware bootproof ships for `board`, if any: the full application for the
/// STM32H723ZG, the minimal beacon firmware for the STM32F446RE and STM32G071RB.
pub fn for_board(board: &BoardProfile) -> Option<BoardFirmware> {
    let root =
        std::env::var_os("BOOTPROOF_FIRMWARE_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(DEFAULT_DIR));
    let (dir, target, minimal) = match board.name.as_str() {
        "stm32h723zg" => ("stm32h7", "thumbv7em-none-eabihf", None),
        "stm32f446re" => ("minimal", "thumbv7em-none-eabihf", Some("minimal-stm32f446re")),
        "stm32g071rb" => ("minimal", "thumbv6m-none-eabi", Some("minimal-stm32g071rb")),
        _ => return None,
    };
    Some(BoardFirmware { board: board.name.clone(), dir: root.join(dir), target, minimal })
}

type BuildKey = (PathBuf, &'static str, Option<&'static str>);
static BUILDS: Mutex<Option<HashMap<BuildKey, Result<(), FirmwareError>>>> = Mutex::new(None);

impl BoardFirmware {
    fn bin(&self, build: Binary) -> Result<&'static str, FirmwareError> {
        match (self.minimal, build) {
            (None, b) => Ok(b.bin()),
            (Some(bin), Binary::Flash) => Ok(bin),
            (Some(_), b) => Err(FirmwareError::NoSuchBuild { board: self.board.clone(), build: b.bin() }),
        }
    }

    /// Whether this is the full application (slot builds, CAN and console beacons) rather than
    /// the minimal beacon firmware.
    pub fn is_full(&self) -> bool {
        self.minimal.is_none()
    }

    /// The ELF of `build`.
    pub fn elf_path(&self, build: Binary) -> Result<PathBuf, FirmwareError> {
        Ok(self.dir.join("target").join(self.target).join("release").join(self.bin(build)?))
    }

    /// Build the workspace (once per process; cargo makes it a no-op when up to date).
    pub fn ensure_built(&self) -> Result<(), FirmwareError> {
        let mut builds = BUILDS.lock().unwrap_or_else(|e| e.into_inner());
        let builds = builds.get_or_insert_with(HashMap::new);
        let key = (self.dir.clone(), self.target, self.minimal);
        if let Some(r) = builds.get(&key) {
            return r.clone();
        }
        let r = self.build();
        builds.insert(key, r.clone());
        r
    }

    /// bootproof's bootloader with a deliberate bug (`BOOTPROOF_MUTANT=<name>` at build time;
    /// see `firmware-under-test/stm32h7/board`), built in a target directory of its own so the
    /// real binaries stay as they are: for showing that a test catches the bug. NUCLEO-H723ZG
    /// only. The first build compiles the whole embedded workspace again (minutes).
    pub fn mutant_bootloader(&self, mutant: &str) -> Result<FirmwareImage, FirmwareError> {
        if self.minimal.is_some() {
            return Err(FirmwareError::NoSuchBuild { board: self.board.clone(), build: "bootloader" });
        }
        let dir = self.dir.join("target").join("mutants").join(mutant);
        self.run_cargo(&dir, &["--bin", "bootloader"], &[("BOOTPROOF_MUTANT", mutant)])?;
        let path = dir.join(self.target).join("release").join("bootloader");
        FirmwareImage::load(&path, None)
            .map_err(|e| FirmwareError::Elf { path: path.clone(), message: format!("{e} (the {mutant} mutant)") })
    }

    fn build(&self) -> Result<(), FirmwareError> {
        if std::env::var("BOOTPROOF_FIRMWARE_PREBUILT").as_deref() == Ok("1") {
            if !self.dir.join("Cargo.toml").is_file() {
                return Err(FirmwareError::NoWorkspace(self.dir.clone()));
            }
            return Ok(());
        }
        let bins: &[&str] = match self.minimal {
            Some(bin) => &["--bin", bin],
            None => &["--bins"],
        };
        self.run_cargo(&self.dir.join("target"), bins, &[])
    }

    fn run_cargo(&self, target_dir: &Path, bins: &[&str], env: &[(&str, &str)]) -> Result<(), FirmwareError> {
        if !self.dir.join("Cargo.toml").is_file() {
            return Err(FirmwareError::NoWorkspace(self.dir.clone()));
        }
        tracing::info!("building bootproof's firmware in {} (release, {})", self.dir.display(), self.target);
        // Run inside the workspace so its .cargo/config.toml (linker scripts) and the
        // repository's rust-toolchain.toml apply, with nothing inherited from an outer cargo.
        let mut cmd = std::process::Command::new("cargo");
        cmd.current_dir(&self.dir)
            .args(["build", "--release", "--target", self.target, "--target-dir"])
            .arg(target_dir)
            .args(bins)
            .envs(env.iter().copied());
        cmd.env_remove("RUSTUP_TOOLCHAIN")
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env_remove("CARGO_BUILD_TARGET")
            .env_remove("CARGO_TARGET_DIR");
        let out = cmd.output().map_err(|e| FirmwareError::NoCargo { dir: self.dir.clone(), message: e.to_string() })?;
        if out.status.success() {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&out.stderr);
        let hint = if text.contains("target may not be installed") || text.contains("can't find crate for `core`") {
            format!(": the {} target is missing; run `rustup target add {}`", self.target, self.target)
        } else {
            String::new()
        };
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(30)..].join("\n");
        Err(FirmwareError::Build { dir: self.dir.clone(), hint, tail })
    }

    /// The image of `build` (built first if needed).
    pub fn image(&self, build: Binary) -> Result<FirmwareImage, FirmwareError> {
        let path = self.elf_path(build)?;
        self.ensure_built()?;
        FirmwareImage::load(&path, None).map_err(|e| FirmwareError::Elf {
            message: format!(
                "{e}; build it with `cargo build --release` in {} (or unset BOOTPROOF_FIRMWARE_PREBUILT)",
                self.dir.display()
            ),
            path,
        })
    }

    /// The symbols of `build`.
    pub fn symbols(&self, build: Binary) -> Result<Symbols, FirmwareError> {
        let img = self.image(build)?;
        Symbols::from_elf(&img.name, &img.raw)
            .map_err(|e| FirmwareError::Elf { path: self.elf_path(build).unwrap_or_default(), message: e.to_string() })
    }

    /// A factory image set, as a probe programs it once: bootproof's bootloader in sector 0
    /// and the application signed with `key` as v1.0.0 (security counter 1) in slot A,
    /// committed and confirmed.
    pub fn factory_set(&self, layout: &Layout, key: &SigningKey) -> Result<FirmwareImage, FirmwareError> {
        let mut segments = self.image(Binary::Bootloader)?.segments;
        let v1 = self.signed(layout, Binary::Slot(SlotId::A), ImageVersion::new(1, 0, 0, 0), 1, key)?;
        let app = boot_core::provision::segments(layout, SlotId::A, &v1, true)
            .map_err(|r| FirmwareError::Sign { what: "app-slot-a".into(), message: r.to_string() })?;
        segments.extend(app.into_iter().map(|(address, data)| bootproof_rig::image::Segment { address, data }));
        FirmwareImage::from_segments("bootproof factory set (bootloader, v1 in slot A)", segments)
            .map_err(|e| FirmwareError::Sign { what: "the factory set".into(), message: e.to_string() })
    }

    /// A slot build signed as an MCUboot image for `slot` (what an update downloads).
    pub fn signed(
        &self,
        layout: &Layout,
        build: Binary,
        version: ImageVersion,
        security_counter: u32,
        key: &SigningKey,
    ) -> Result<Vec<u8>, FirmwareError> {
        let slot = match build {
            Binary::Slot(s) | Binary::SlotNoConfirm(s) => s,
            Binary::Flash | Binary::Bootloader => {
                return Err(FirmwareError::Sign {
                    what: build.bin().into(),
                    message: "it is linked at the start of flash, not for a slot".into(),
                });
            }
        };
        let img = self.image(build)?;
        let payload = slot_payload(&img, layout, slot)
            .map_err(|message| FirmwareError::Sign { what: build.bin().into(), message })?;
        let opts = SignOptions {
            load_addr: layout.slot_address(slot),
            header_size: layout.header_size as u16,
            version,
            security_counter,
        };
        sign(&payload, key, &opts).map_err(|e| FirmwareError::Sign { what: build.bin().into(), message: e.to_string() })
    }
}

/// An application's bytes from its vector table on, checked to be linked for `slot`; the
/// error says how to relink it.
pub fn slot_payload(img: &FirmwareImage, layout: &Layout, slot: SlotId) -> Result<Vec<u8>, String> {
    let vt = layout.vector_table(slot);
    if img.start() != vt {
        return Err(format!(
            "{} starts at {:#010x}, but slot {slot}'s vector table is at {vt:#010x}: link it with the slot-{slot} memory.x \
             (boot-core's layout: FLASH ORIGIN = {vt:#010x})",
            img.name,
            img.start()
        ));
    }
    // The reset vector must point into this slot: a raw binary carries no address, but its
    // vector table says where it was linked.
    let first = &img.segments[0].data;
    if first.len() >= 8 {
        let reset = u32::from_le_bytes([first[4], first[5], first[6], first[7]]) & !1;
        let linked = layout.slot_containing(reset);
        if linked != Some(slot) {
            return Err(format!(
                "{}: its reset vector {reset:#010x} is {}, not in slot {slot}: it is linked for another address; \
                 link it with the slot-{slot} memory.x (FLASH ORIGIN = {vt:#010x})",
                img.name,
                match linked {
                    Some(s) => format!("in slot {s}"),
                    None => "outside both slots".to_string(),
                }
            ));
        }
    }
    let end = img.segments.last().map(|s| s.end()).unwrap_or(vt as u64);
    let mut out = vec![0xFFu8; (end - vt as u64) as usize];
    for seg in &img.segments {
        let at = (seg.address - vt) as usize;
        out[at..at + seg.data.len()].copy_from_slice(&seg.data);
    }
    Ok(out)
}

/// How much of the chip an ELF uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Footprint {
    /// Bytes stored in flash (code, constants, the initial values of data).
    pub flash: u64,
    /// Bytes of RAM reserved statically (data, bss, uninit, the canary), without the stack.
    pub ram: u64,
}

/// The footprint of the ELF `bytes` on `board`, from its loadable segments.
pub fn footprint(name: &str, bytes: &[u8], board: &BoardProfile) -> Result<Footprint, FirmwareError> {
    use object::read::elf::{ElfFile32, ProgramHeader};
    let elf = ElfFile32::<object::Endianness>::parse(bytes)
        .map_err(|e| FirmwareError::Elf { path: name.into(), message: format!("not a 32-bit ELF: {e}") })?;
    let endian = elf.endian();
    let mut f = Footprint { flash: 0, ram: 0 };
    for ph in elf.elf_program_headers() {
        if ph.p_type(endian) != object::elf::PT_LOAD {
            continue;
        }
        let (paddr, vaddr) = (ph.p_paddr(endian), ph.p_vaddr(endian));
        if board.flash.contains(paddr) {
            f.flash += ph.p_filesz(endian) as u64;
        }
        if board.ram.iter().any(|r| vaddr >= r.base && vaddr < r.base + r.size) {
            f.ram += ph.p_memsz(endian) as u64;
        }
    }
    Ok(f)
}

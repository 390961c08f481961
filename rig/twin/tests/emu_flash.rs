//! The H723's flash controller as firmware on the emulated core sees it: unlock, program a
//! 32-byte word with its timing, power cuts that tear the word, and the ECC flags on reads
//! (a corrected single error sets SNECCERR1 and ECC_FA1R; a double error is a bus fault).
//!
//! The firmware is hand-assembled Thumb code (encodings beside each instruction), loaded at
//! the factory with a vector table whose other vectors are zero (no handler: a fault locks up).

use std::time::Duration;

use bootproof_fixtures::BoardProfile;
use bootproof_rig::image::{FirmwareImage, Segment};
use bootproof_rig::probe::CoreState;
use bootproof_twin::flash::WordState;
use bootproof_twin::{Twin, TwinOptions};

const WORD: u32 = 0x0800_8000;
const FLASH_REGS: u32 = 0x5200_2000;

/// A vector table (SP at the top of DTCM, reset at 0x08000401) and `code` at 0x08000400.
fn firmware(name: &str, code: &[u16], literals: &[u32]) -> FirmwareImage {
    let mut img = vec![0u8; 0x400];
    img[..4].copy_from_slice(&0x2002_0000u32.to_le_bytes());
    img[4..8].copy_from_slice(&0x0800_0401u32.to_le_bytes());
    for h in code {
        img.extend_from_slice(&h.to_le_bytes());
    }
    assert_eq!(img.len() % 4, 0, "literals word-aligned");
    for l in literals {
        img.extend_from_slice(&l.to_le_bytes());
    }
    FirmwareImage::from_segments(name, vec![Segment { address: 0x0800_0000, data: img }]).unwrap()
}

/// Unlock bank 1, set PG, store eight words of 0x11111111 at 0x08008000, wait for QW and BSY
/// to clear, spin.
fn programs_a_word() -> FirmwareImage {
    #[rustfmt::skip]
    let code = [
        0x4809, // 400 ldr r0, [pc, #36]   ; FLASH
        0x490A, // 402 ldr r1, [pc, #40]   ; KEY1
        0x6041, // 404 str r1, [r0, #4]    ; KEYR1
        0x490A, // 406 ldr r1, [pc, #40]   ; KEY2
        0x6041, // 408 str r1, [r0, #4]
        0x2102, // 40a movs r1, #2         ; PG
        0x60C1, // 40c str r1, [r0, #12]   ; CR1
        0x4A09, // 40e ldr r2, [pc, #36]   ; 0x08008000
        0x4B09, // 410 ldr r3, [pc, #36]   ; 0x11111111
        0x2408, // 412 movs r4, #8
        0x6013, // 414 str r3, [r2]
        0x3204, // 416 adds r2, #4
        0x3C01, // 418 subs r4, #1
        0xD1FB, // 41a bne 414
        0x2505, // 41c movs r5, #5         ; BSY | QW
        0x6901, // 41e ldr r1, [r0, #16]   ; SR1
        0x4229, // 420 tst r1, r5
        0xD1FC, // 422 bne 41e
        0xE7FE, // 424 b .
        0x0000, // 426 (padding)
    ];
    firmware("program.bin", &code, &[FLASH_REGS, 0x4567_0123, 0xCDEF_89AB, WORD, 0x1111_1111])
}

/// Read the word at 0x08008000, then SR1 and ECC_FA1R, and store all three at 0x20000000.
fn reads_the_word() -> FirmwareImage {
    #[rustfmt::skip]
    let code = [
        0x4804, // 400 ldr r0, [pc, #16]   ; FLASH
        0x4A05, // 402 ldr r2, [pc, #20]   ; 0x08008000
        0x4C05, // 404 ldr r4, [pc, #20]   ; 0x20000000
        0x6811, // 406 ldr r1, [r2]        ; the flash word
        0x6021, // 408 str r1, [r4]
        0x6903, // 40a ldr r3, [r0, #16]   ; SR1
        0x6063, // 40c str r3, [r4, #4]
        0x6E03, // 40e ldr r3, [r0, #96]   ; ECC_FA1R
        0x60A3, // 410 str r3, [r4, #8]
        0xE7FE, // 412 b .
    ];
    firmware("read.bin", &code, &[FLASH_REGS, WORD, 0x2000_0000])
}

fn twin() -> Twin {
    let p = BoardProfile::builtin("stm32h723zg").unwrap();
    Twin::new(p.clone(), TwinOptions::for_profile(&p))
}

#[tokio::test(start_paused = true)]
async fn firmware_programs_a_flash_word_through_the_controller() {
    let t = twin();
    t.program(&programs_a_word()).unwrap();
    let mut rig = t.rig();
    rig.power().unwrap().power_on().await.unwrap();
    bootproof_rig::time::sleep(Duration::from_millis(1)).await;
    let (state, raw) = {
        let st = t.board().state();
        (st.flash.word_state(WORD), st.flash.raw(WORD, 32).to_vec())
    };
    assert_eq!(state, WordState::Programmed);
    assert_eq!(raw, [0x11; 32]);
    let c = rig.probe().unwrap().core_status().await.unwrap();
    assert_eq!((c.state, c.pc), (CoreState::Running, Some(0x0800_0424)), "waited for the program: {c}");
}

#[tokio::test(start_paused = true)]
async fn a_power_cut_during_the_programming_time_tears_the_word() {
    let t = twin();
    t.program(&programs_a_word()).unwrap();
    // The supply pin itself, not the relay (whose settle time would hide the cut point).
    t.board().set_power(true);
    // The program takes the profile's 130 µs and starts a few instructions after reset: cut
    // 60 µs in, then check it would have finished without the cut.
    bootproof_rig::time::sleep(Duration::from_micros(60)).await;
    t.board().set_power(false);
    let state = t.board().state().flash.word_state(WORD);
    let events: Vec<String> = t.board().events().into_iter().map(|e| e.what).collect();
    assert_eq!(state, WordState::Inconsistent, "{events:#?}");
    assert!(events.iter().any(|e| e == "flash word 0x08008000 torn by reset/power loss"), "{events:#?}");
}

#[tokio::test(start_paused = true)]
async fn without_the_cut_the_same_timing_programs_the_word() {
    let t = twin();
    t.program(&programs_a_word()).unwrap();
    t.board().set_power(true);
    bootproof_rig::time::sleep(Duration::from_micros(200)).await;
    t.board().set_power(false);
    let state = t.board().state().flash.word_state(WORD);
    assert_eq!(state, WordState::Programmed);
}

async fn read_back(setup: impl FnOnce(&Twin)) -> (Twin, bootproof_rig::CoreStatus, Vec<u8>) {
    let t = twin();
    t.program(&reads_the_word()).unwrap();
    t.board().state().flash.program_word(WORD, &[0x5A; 32]).unwrap();
    setup(&t);
    let mut rig = t.rig();
    rig.power().unwrap().power_on().await.unwrap();
    bootproof_rig::time::sleep(Duration::from_millis(1)).await;
    let c = rig.probe().unwrap().core_status().await.unwrap();
    let ram = rig.probe().unwrap().read_memory(0x2000_0000, 12).await.unwrap();
    (t, c, ram)
}

fn word(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes(b[4 * i..4 * i + 4].try_into().unwrap())
}

#[tokio::test(start_paused = true)]
async fn a_clean_read_sets_no_ecc_flag() {
    let (_t, c, ram) = read_back(|_| {}).await;
    assert_eq!(c.state, CoreState::Running, "{c}");
    assert_eq!(word(&ram, 0), 0x5A5A_5A5A);
    assert_eq!(word(&ram, 1) & (3 << 25), 0, "no SNECCERR/DBECCERR: SR1 {:#010x}", word(&ram, 1));
}

#[tokio::test(start_paused = true)]
async fn a_corrected_single_error_reads_the_data_and_sets_sneccerr_and_the_address() {
    let (_t, c, ram) = read_back(|t| t.board().state().flash.flip_bit(WORD, 77).unwrap()).await;
    assert_eq!(c.state, CoreState::Running, "{c}");
    assert_eq!(word(&ram, 0), 0x5A5A_5A5A, "the data, corrected");
    assert_ne!(word(&ram, 1) & (1 << 25), 0, "SNECCERR1: SR1 {:#010x}", word(&ram, 1));
    assert_eq!(word(&ram, 2), (WORD - 0x0800_0000) / 32, "ECC_FA1R: the flash word's index");
}

#[tokio::test(start_paused = true)]
async fn a_double_error_is_a_bus_fault_that_locks_up_a_core_without_handlers() {
    let (t, c, _) = read_back(|t| {
        let mut st = t.board().state();
        st.flash.flip_bit(WORD, 3).unwrap();
        st.flash.flip_bit(WORD, 200).unwrap();
    })
    .await;
    let state = t.board().state().flash.word_state(WORD);
    assert_eq!(state, WordState::Inconsistent);
    assert_eq!(c.state, CoreState::LockedUp, "{c}");
    let why = c.detail.unwrap();
    assert!(why.contains("0x08008000") && why.to_lowercase().contains("ecc"), "{why}");
}

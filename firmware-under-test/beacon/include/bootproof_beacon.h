/*
 * bootproof boot beacon, format 1: what a firmware announces right after it boots, so
 * bootproof (https://example.invalid/bootproof) can see what booted and how.
 *
 * The same record as the Rust crate bootproof-beacon (firmware-under-test/beacon). SPDX:
 * MIT OR Apache-2.0.
 *
 * 32 bytes, little-endian:
 *   0  magic 0xB7          1  format 1        2  stage         3  slot
 *   4  version major       5  version minor   6  revision (u16) 8  build (u32)
 *   12 reset flags (u32)   16 vector table (u32)
 *   20 canary              21 flags           22 boots (u16)   24 reserved (8 bytes, zero)
 *
 * Send it as one CAN FD frame, standard ID 0x7A0, 32 bytes, BRS on; on classic CAN as four
 * 8-byte frames, IDs 0x7A4..0x7A7 in order; on a console as one line: "BEACON " followed by
 * the 32 bytes as 64 lowercase hex digits (anything after them is for people); in RAM as the
 * 32 bytes of a global named BOOTPROOF_BEACON (kept by the linker), which bootproof reads
 * through the debug probe:
 *   __attribute__((used)) uint8_t BOOTPROOF_BEACON[BOOTPROOF_BEACON_LEN];
 */
#ifndef BOOTPROOF_BEACON_H
#define BOOTPROOF_BEACON_H

#include <stdint.h>

#define BOOTPROOF_BEACON_LEN 32u
#define BOOTPROOF_BEACON_MAGIC 0xB7u
#define BOOTPROOF_BEACON_FORMAT 1u

#define BOOTPROOF_BEACON_CAN_ID 0x7A0u
#define BOOTPROOF_BEACON_HEARTBEAT_ID 0x7A1u
#define BOOTPROOF_BEACON_REQUEST_ID 0x7A2u
#define BOOTPROOF_BEACON_CLASSIC_ID 0x7A4u

/* stage */
#define BOOTPROOF_STAGE_BOOTLOADER 1u
#define BOOTPROOF_STAGE_APPLICATION 2u
#define BOOTPROOF_STAGE_RECOVERY 3u
#define BOOTPROOF_STAGE_UPDATE 4u

/* slot */
#define BOOTPROOF_SLOT_NONE 0u
#define BOOTPROOF_SLOT_A 1u
#define BOOTPROOF_SLOT_B 2u
#define BOOTPROOF_SLOT_UNKNOWN 0xFFu

/* canary */
#define BOOTPROOF_CANARY_COLD 0u
#define BOOTPROOF_CANARY_RETAINED 1u
#define BOOTPROOF_CANARY_CORRUPTED 2u

/* flags */
#define BOOTPROOF_FLAG_TRIAL 0x01u
#define BOOTPROOF_FLAG_CONFIRMED 0x02u
#define BOOTPROOF_FLAG_CONFIRM_FAILED 0x04u

/* requests (first byte of a frame on BOOTPROOF_BEACON_REQUEST_ID) */
#define BOOTPROOF_REQUEST_ENTER_ROM 1u
#define BOOTPROOF_REQUEST_RESET 2u
#define BOOTPROOF_REQUEST_BEACON 3u
#define BOOTPROOF_REQUEST_UPDATE_MODE 4u

typedef struct {
    uint8_t stage;
    uint8_t slot;
    uint8_t version_major;
    uint8_t version_minor;
    uint16_t version_revision;
    uint32_t version_build;
    uint32_t reset_flags; /* RCC_RSR as read at boot, before clearing it */
    uint32_t vector_table;
    uint8_t canary;
    uint8_t flags;
    uint16_t boots;
} bootproof_beacon_t;

static inline void bootproof_beacon_put16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static inline void bootproof_beacon_put32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

/* Encode `b` into the 32-byte record `out`. */
static inline void bootproof_beacon_encode(const bootproof_beacon_t *b, uint8_t out[BOOTPROOF_BEACON_LEN]) {
    for (unsigned i = 0; i < BOOTPROOF_BEACON_LEN; i++) {
        out[i] = 0;
    }
    out[0] = BOOTPROOF_BEACON_MAGIC;
    out[1] = BOOTPROOF_BEACON_FORMAT;
    out[2] = b->stage;
    out[3] = b->slot;
    out[4] = b->version_major;
    out[5] = b->version_minor;
    bootproof_beacon_put16(&out[6], b->version_revision);
    bootproof_beacon_put32(&out[8], b->version_build);
    bootproof_beacon_put32(&out[12], b->reset_flags);
    bootproof_beacon_put32(&out[16], b->vector_table);
    out[20] = b->canary;
    out[21] = b->flags;
    bootproof_beacon_put16(&out[22], b->boots);
}

/* The console line's hex part: "BEACON " and 64 hex digits, NUL-terminated (72 bytes). */
static inline void bootproof_beacon_line(const bootproof_beacon_t *b, char out[72]) {
    static const char hex[] = "0123456789abcdef";
    uint8_t raw[BOOTPROOF_BEACON_LEN];
    bootproof_beacon_encode(b, raw);
    const char prefix[] = "BEACON ";
    unsigned n = 0;
    for (; prefix[n]; n++) {
        out[n] = prefix[n];
    }
    for (unsigned i = 0; i < BOOTPROOF_BEACON_LEN; i++) {
        out[n++] = hex[raw[i] >> 4];
        out[n++] = hex[raw[i] & 15];
    }
    out[n] = 0;
}

#endif /* BOOTPROOF_BEACON_H */

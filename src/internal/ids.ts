/**
 * Random (version 4) UUIDs for endpoint ids, made from a pool of random bytes. `crypto.randomUUID` took about
 * 1.1 µs per id here and leaves its result as a tree of concatenated strings; starting 100k endpoints spent a
 * fifth of its time on it. This formats 16 pooled random bytes straight into one flat string.
 */
import { randomFillSync } from "node:crypto"

const IDS_PER_REFILL = 256
const pool = Buffer.allocUnsafe(16 * IDS_PER_REFILL)
let offset = pool.length
const text = Buffer.allocUnsafe(36)
const HEX = Buffer.from("0123456789abcdef", "latin1")

/** A fresh random UUID, as `crypto.randomUUID` would give (lower-case, version 4, RFC 4122 variant). */
export const randomUuid = (): string => {
  if (offset === pool.length) {
    randomFillSync(pool)
    offset = 0
  }
  pool[offset + 6] = (pool[offset + 6]! & 0x0f) | 0x40
  pool[offset + 8] = (pool[offset + 8]! & 0x3f) | 0x80
  let at = 0
  for (let i = 0; i < 16; i++) {
    if (i === 4 || i === 6 || i === 8 || i === 10) text[at++] = 0x2d
    const byte = pool[offset + i]!
    text[at++] = HEX[byte >> 4]!
    text[at++] = HEX[byte & 0x0f]!
  }
  offset += 16
  return text.toString("latin1", 0, 36)
}

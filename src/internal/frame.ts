/**
 * Length-prefixed framing: every frame is a 4-byte big-endian body length followed by the body. The decoder
 * checks a length against the limit as soon as its 4 bytes are in, so an oversized frame is refused before any
 * of its body is buffered.
 */

/** Bytes of the length prefix. */
export const HEADER_BYTES = 4

/** Why the byte stream cannot be framed; the connection must be closed. */
export class FrameError {
  readonly _tag = "FrameError"
  constructor(
    readonly detail: string,
    /** A length prefix exceeded the limit. */
    readonly oversized = false
  ) {}
}

/** Turns chunks of a byte stream into frames, whatever the chunking. */
/** Bodies up to this size are received into one buffer allocated at once; larger ones piece by piece. */
const PREALLOCATE_BYTES = 256 * 1024

export class FrameDecoder {
  private readonly header = new Uint8Array(HEADER_BYTES)
  private headerFilled = 0
  /** The length of the body being received; 0 between frames. */
  private length = 0
  // A large body arriving in pieces is kept as the pieces and joined once complete: memory grows with the bytes
  // that actually arrived, not with what a length prefix claims.
  private parts: Array<Uint8Array> = []
  private bodyFilled = 0

  /** The largest body accepted; it may be raised once the peer is known (see Connection). */
  constructor(public limit: number) {}

  /** Bytes received but not yet part of a complete frame. */
  get buffered(): number {
    return this.length === 0 ? this.headerFilled : this.bodyFilled
  }

  /** Feeds one chunk; calls `onFrame` for each frame it completes, or returns the error that ends the stream. */
  push(chunk: Uint8Array, onFrame: (frame: Uint8Array) => void): FrameError | undefined {
    let offset = 0
    const end = chunk.length
    while (offset < end) {
      if (this.length === 0) {
        let length: number
        if (this.headerFilled === 0 && end - offset >= HEADER_BYTES) {
          length = readLength(chunk, offset)
          offset += HEADER_BYTES
        } else {
          const take = Math.min(HEADER_BYTES - this.headerFilled, end - offset)
          this.header.set(chunk.subarray(offset, offset + take), this.headerFilled)
          this.headerFilled += take
          offset += take
          if (this.headerFilled < HEADER_BYTES) return undefined
          this.headerFilled = 0
          length = readLength(this.header, 0)
        }
        if (length === 0) return new FrameError("a frame with an empty body")
        if (length > this.limit) {
          return new FrameError(`a frame of ${length} bytes, over the maximum frame size of ${this.limit} bytes`, true)
        }
        if (end - offset >= length) {
          // The whole body is in this chunk: hand out a view instead of copying.
          onFrame(chunk.subarray(offset, offset + length))
          offset += length
          continue
        }
        this.length = length
        this.bodyFilled = 0
      }
      const take = Math.min(this.length - this.bodyFilled, end - offset)
      if (this.length <= PREALLOCATE_BYTES) {
        if (this.parts.length === 0) this.parts.push(new Uint8Array(this.length))
        this.parts[0]!.set(chunk.subarray(offset, offset + take), this.bodyFilled)
      } else {
        // A view would pin the whole chunk, and the caller may reuse it: keep a copy of just these bytes.
        this.parts.push(chunk.slice(offset, offset + take))
      }
      this.bodyFilled += take
      offset += take
      if (this.bodyFilled === this.length) {
        const parts = this.parts
        const body = parts.length === 1 ? parts[0]! : Buffer.concat(parts, this.length)
        this.parts = []
        this.length = 0
        this.bodyFilled = 0
        onFrame(body)
      }
    }
    return undefined
  }
}

const readLength = (bytes: Uint8Array, offset: number): number =>
  ((bytes[offset]! << 24) >>> 0) + (bytes[offset + 1]! << 16) + (bytes[offset + 2]! << 8) + bytes[offset + 3]!

/** Writes the length prefix of a body of `length` bytes into the first 4 bytes of `target`. */
export const writeHeader = (target: Uint8Array, length: number): void => {
  target[0] = length >>> 24
  target[1] = (length >>> 16) & 0xff
  target[2] = (length >>> 8) & 0xff
  target[3] = length & 0xff
}

/** A frame holding `body`. */
export const encode = (body: Uint8Array): Uint8Array => {
  const frame = new Uint8Array(HEADER_BYTES + body.length)
  writeHeader(frame, body.length)
  frame.set(body, HEADER_BYTES)
  return frame
}

/**
 * The `raw` system: a plain node:net echo of 4-byte length-prefixed frames, with no library, no envelope and no
 * encoding. It is what this machine's loopback and event loop allow, the ceiling the other systems are read against.
 *
 *   tsx bench/systems/raw.ts server --workload ask-32B-seq
 *   tsx bench/systems/raw.ts client --workload ask-32B-seq --port P --runs 3 --seconds 1 --warmup 0.5
 *
 * The frame's body depends on the workload:
 * - asks: the payload, echoed;
 * - `tell-32B-remote`: a payload is a tell (counted, no reply); an empty frame asks for the count, answered with a
 *   6-byte big-endian count. A burst of tells is written corked, as one chunk, as any framing client would batch;
 * - fan-out: a 2-byte target index before the payload. raw has no endpoints, so the target is a field the server
 *   dispatches on (one handler per target, each counting its calls) before it echoes the frame.
 */
import * as net from "node:net"
import {
  clientArgs,
  measurePromise,
  measureTellsPromise,
  payload,
  ready,
  remoteWorkload,
  report,
  roundRobin,
  serverWorkload
} from "../support/driver.js"

/** Splits a byte stream into length-prefixed frames; calls `onFrame` with each whole frame, prefix included. */
const framer = (onFrame: (frame: Buffer) => void) => {
  let buffered: Buffer = Buffer.alloc(0)
  return (chunk: Buffer) => {
    buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk])
    let offset = 0
    while (buffered.length - offset >= 4) {
      const size = 4 + buffered.readUInt32BE(offset)
      if (buffered.length - offset < size) break
      onFrame(buffered.subarray(offset, offset + size))
      offset += size
    }
    buffered = offset === buffered.length ? Buffer.alloc(0) : buffered.subarray(offset)
  }
}

const COUNT_BYTES = 6

/** How the server handles one frame on `socket`, for the workload it serves. */
const handler = (socket: net.Socket): (frame: Buffer) => void => {
  const workload = serverWorkload()
  if (workload.kind === "tell") {
    let tells = 0
    return (frame) => {
      if (frame.length > 4) {
        tells++
        return
      }
      const reply = Buffer.alloc(4 + COUNT_BYTES)
      reply.writeUInt32BE(COUNT_BYTES, 0)
      reply.writeUIntBE(tells, 4, COUNT_BYTES)
      socket.write(reply)
    }
  }
  if (workload.targets > 1) {
    const calls = new Array<number>(workload.targets).fill(0)
    const targets = Array.from({ length: workload.targets }, (_, index) => (frame: Buffer) => {
      calls[index]!++
      socket.write(frame)
    })
    return (frame) => {
      const target = targets[frame.readUInt16BE(4)]
      if (target === undefined) socket.destroy(new Error(`raw server: no target ${frame.readUInt16BE(4)}`))
      else target(frame)
    }
  }
  return (frame) => socket.write(frame)
}

const server = () => {
  const sockets = new Set<net.Socket>()
  const listener = net.createServer((socket) => {
    sockets.add(socket)
    socket.once("close", () => sockets.delete(socket))
    socket.setNoDelay(true)
    // Frames that arrived in one chunk go back in one write, as any framing server would do.
    const onData = framer(handler(socket))
    socket.on("data", (chunk) => {
      socket.cork()
      onData(chunk)
      process.nextTick(() => socket.uncork())
    })
    socket.on("error", () => socket.destroy())
  })
  listener.listen(0, "127.0.0.1", () => ready((listener.address() as net.AddressInfo).port))
  // Ends open connections too, so a client that is still connected cannot hold the server up.
  const stop = () => {
    listener.close(() => process.exit(0))
    for (const socket of sockets) socket.destroy()
  }
  process.on("SIGTERM", stop)
  process.on("SIGINT", stop)
}

/** A frame of `body`, with `prefix` bytes of room before the body (the fan-out target). */
const frameOf = (body: Uint8Array, prefix = 0) => {
  const frame = Buffer.alloc(4 + prefix + body.length)
  frame.writeUInt32BE(prefix + body.length, 0)
  frame.set(body, 4 + prefix)
  return frame
}

const client = async () => {
  const args = clientArgs()
  const workload = remoteWorkload(args.workload)
  const body = payload(workload.bytes)
  const socket = net.connect({ host: "127.0.0.1", port: args.port })
  socket.setNoDelay(true)
  await new Promise<void>((resolve, reject) => socket.once("connect", resolve).once("error", reject))
  // Replies come back in request order on one socket, so a FIFO of resolvers matches them.
  const waiting: Array<(frame: Buffer) => void> = []
  let head = 0
  socket.on("data", framer((frame) => {
    const resolve = waiting[head]!
    waiting[head++] = undefined as never
    if (head === waiting.length) {
      waiting.length = 0
      head = 0
    }
    resolve(frame)
  }))
  const reply = (write: () => void) =>
    new Promise<Buffer>((resolve) => {
      waiting.push(resolve)
      write()
    })
  if (workload.kind === "tell") {
    const tell = frameOf(body)
    const count = frameOf(new Uint8Array(0))
    const burst = async (tells: number) => {
      socket.cork()
      for (let i = 0; i < tells; i++) socket.write(tell)
      const answer = reply(() => socket.write(count))
      socket.uncork()
      return (await answer).readUIntBE(4, COUNT_BYTES)
    }
    report(await measureTellsPromise(burst, args))
  } else if (workload.targets > 1) {
    // One frame per target, built once, as the other clients build their calls once.
    const frames = Array.from({ length: workload.targets }, (_, index) => {
      const frame = frameOf(body, 2)
      frame.writeUInt16BE(index, 4)
      return frame
    })
    const pick = roundRobin(frames)
    const call = () => {
      const frame = pick()
      return reply(() => socket.write(frame))
    }
    report(await measurePromise(call, workload.inFlight, args))
  } else {
    const frame = frameOf(body)
    report(await measurePromise(() => reply(() => socket.write(frame)), workload.inFlight, args))
  }
  socket.end()
  socket.destroy()
}

const role = process.argv[2]
if (role === "server") server()
else if (role === "client") await client()
else {
  console.error(
    "usage: tsx bench/systems/raw.ts server --workload ID | client --workload ID --port P [--runs N --seconds S ...]"
  )
  process.exit(2)
}

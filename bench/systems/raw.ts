/**
 * The `raw` system: a plain node:net echo of 4-byte length-prefixed frames, with no library, no envelope and no
 * encoding. It is what this machine's loopback and event loop allow, the ceiling the other systems are read against.
 *
 *   tsx bench/systems/raw.ts server
 *   tsx bench/systems/raw.ts client --workload ask-32B-seq --port P --runs 3 --seconds 1 --warmup 0.5
 */
import * as net from "node:net"
import { clientArgs, measurePromise, payload, ready, remoteWorkload, report } from "../support/driver.js"

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

const server = () => {
  const listener = net.createServer((socket) => {
    socket.setNoDelay(true)
    // Frames that arrived in one chunk go back in one write, as any framing server would do.
    const onData = framer((frame) => socket.write(frame))
    socket.on("data", (chunk) => {
      socket.cork()
      onData(chunk)
      process.nextTick(() => socket.uncork())
    })
    socket.on("error", () => socket.destroy())
  })
  listener.listen(0, "127.0.0.1", () => ready((listener.address() as net.AddressInfo).port))
  const stop = () => listener.close(() => process.exit(0))
  process.on("SIGTERM", stop)
  process.on("SIGINT", stop)
}

const client = async () => {
  const args = clientArgs()
  const workload = remoteWorkload(args.workload)
  const body = payload(workload.bytes)
  const frame = Buffer.alloc(4 + body.length)
  frame.writeUInt32BE(body.length, 0)
  frame.set(body, 4)
  const socket = net.connect({ host: "127.0.0.1", port: args.port })
  socket.setNoDelay(true)
  await new Promise<void>((resolve, reject) => socket.once("connect", resolve).once("error", reject))
  // Replies come back in request order on one socket, so a FIFO of resolvers matches them.
  const waiting: Array<() => void> = []
  let head = 0
  socket.on("data", framer(() => {
    const resolve = waiting[head]!
    waiting[head++] = undefined as never
    if (head === waiting.length) {
      waiting.length = 0
      head = 0
    }
    resolve()
  }))
  const call = () =>
    new Promise<void>((resolve) => {
      waiting.push(resolve)
      socket.write(frame)
    })
  report(await measurePromise(call, workload.inFlight, args))
  socket.end()
  socket.destroy()
}

const role = process.argv[2]
if (role === "server") server()
else if (role === "client") await client()
else {
  console.error("usage: tsx bench/systems/raw.ts server | client --workload ID --port P [--runs N --seconds S --warmup S]")
  process.exit(2)
}

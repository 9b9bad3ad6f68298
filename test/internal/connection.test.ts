/**
 * The connection over an in-memory socket: frames queued while the writer waits go out in one write, and a
 * closing connection fails every call in flight at once.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Schema } from "effect"
import { Duplex } from "node:stream"
import { RpcConfig, RpcError, RpcGateway } from "effect-actor-rpc"
import { Connection, type ConnectionOwner, type OutboundCall } from "../../src/internal/connection.js"
import { NoToken } from "../../src/internal/invocation.js"
import * as Frame from "../../src/internal/frame.js"
import * as Wire from "../../src/internal/wire.js"
import { connectionOwner } from "../fixtures/connectionOwner.js"
import { settle } from "../fixtures/common.js"

const Gateway = RpcGateway.make("Batch", { get: RpcGateway.ask({ payload: Schema.Number, success: Schema.Number }) })

const owner = connectionOwner("test", "i")

/**
 * A socket that receives only what the test pushes and records, for each write, how many frames it carried. With
 * `hold`, a write completes only when the test calls `release`, so the socket's buffer fills up.
 */
const recordingSocket = (options?: { readonly hold: boolean }) => {
  const batches: Array<number> = []
  const held: Array<() => void> = []
  const countFrames = (chunks: ReadonlyArray<Uint8Array>) => {
    const decoder = new Frame.FrameDecoder(1 << 20)
    let frames = 0
    for (const chunk of chunks) decoder.push(chunk, () => void frames++)
    return frames
  }
  const done = (callback: () => void) => options?.hold ? held.push(callback) : callback()
  const socket = new Duplex({
    writableHighWaterMark: 1,
    read() {},
    write(chunk: Buffer, _encoding, callback) {
      batches.push(countFrames([chunk]))
      done(callback)
    },
    writev(chunks, callback) {
      batches.push(countFrames(chunks.map((c) => c.chunk as Buffer)))
      done(callback)
    }
  })
  const release = () => held.splice(0).forEach((callback) => callback())
  return { batches, socket, release }
}

const chunksOf = (frame: Wire.OutFrame) => frame.tail === undefined ? [frame.bytes] : [frame.bytes, frame.tail]

const failureOf = (exit: Exit.Exit<unknown, unknown>) =>
  Exit.isFailure(exit) && exit.cause.reasons[0]?._tag === "Fail" ? exit.cause.reasons[0].error : undefined

const call = (n: number) => ({
  address: "rpc://127.0.0.1:1/x",
  endpointId: "x",
  gateway: Gateway,
  method: "get",
  payload: n,
  token: NoToken,
  timeoutMillis: Infinity,
  span: undefined
})

const askOn = (connection: Connection) => (outbound: OutboundCall) =>
  Effect.callback<unknown, unknown>((resume) => {
    const pending = connection.ask(outbound, resume)
    return pending === undefined ? undefined : Effect.sync(() => pending.cancel(true))
  })

const noClassify = () => ({ reason: "Unreachable" as const, detail: "" })

describe("Connection", () => {
  it.effect("frames queued in one turn go out in one write, however many calls are in flight", () =>
    Effect.gen(function*() {
      const { batches, socket } = recordingSocket()
      const connection = new Connection(owner, "127.0.0.1:1", "outbound")
      const running = yield* Effect.forkChild(connection.run(socket, noClassify))
      yield* settle
      assert.deepStrictEqual(batches, [1], "the hello")
      const ask = askOn(connection)
      const asks = []
      for (let i = 0; i < 200; i++) asks.push(yield* Effect.forkChild(ask(call(i)), { startImmediately: true }))
      yield* settle
      assert.deepStrictEqual(batches, [1, 200], "200 asks in one write")
      connection.close({ reason: "Unreachable", detail: "test over" }, false)
      const exits = yield* Effect.forEach(asks, Fiber.await)
      for (const exit of exits) {
        const error = failureOf(exit)
        assert.instanceOf(error, RpcError.RecipientUnreachableError)
        assert.include((error as RpcError.RecipientUnreachableError).reason, "test over")
      }
      yield* Fiber.join(running)
    }))

  it.effect("a heartbeat request is answered; a heartbeat reply is not", () =>
    Effect.gen(function*() {
      const { batches, socket } = recordingSocket()
      const connection = new Connection(owner, "127.0.0.1:1", "inbound")
      const running = yield* Effect.forkChild(connection.run(socket, noClassify))
      const feed = (frame: Wire.OutFrame) => socket.push(Buffer.concat(chunksOf(frame)))
      feed(Wire.hello("peer", "peer", null, 1024))
      yield* settle
      assert.deepStrictEqual(batches, [1], "our hello, in answer to the peer's")
      feed(Wire.heartbeatReply)
      yield* settle
      assert.deepStrictEqual(batches, [1])
      feed(Wire.heartbeat)
      yield* settle
      assert.deepStrictEqual(batches, [1, 1])
      connection.close({ reason: "Unreachable", detail: "test over" }, false)
      yield* Fiber.join(running)
    }))

  it.effect("when the socket's buffer is full, frames wait for its drain and then go out together", () =>
    Effect.gen(function*() {
      const { batches, socket, release } = recordingSocket({ hold: true })
      const connection = new Connection(owner, "127.0.0.1:1", "outbound")
      const running = yield* Effect.forkChild(connection.run(socket, noClassify))
      yield* settle
      assert.deepStrictEqual(batches, [1], "the hello, not yet written out")
      const ask = askOn(connection)
      for (let i = 0; i < 3; i++) yield* Effect.forkChild(ask(call(i)), { startImmediately: true })
      yield* settle
      assert.deepStrictEqual(batches, [1], "nothing more while the hello is held")
      release()
      yield* settle
      assert.deepStrictEqual(batches, [1, 3], "the three asks in one write after the drain")
      connection.close({ reason: "Unreachable", detail: "test over" }, false)
      release()
      yield* Fiber.join(running)
    }))

  it.effect("a peer that hangs up fails the asks in flight and ends the run", () =>
    Effect.gen(function*() {
      const { socket } = recordingSocket()
      const connection = new Connection(owner, "127.0.0.1:1", "outbound")
      const running = yield* Effect.forkChild(connection.run(socket, noClassify))
      socket.push(Buffer.concat(chunksOf(Wire.hello("peer", "peer", null, 1024))))
      yield* settle
      assert.strictEqual(connection.state, "open")
      const asking = yield* Effect.forkChild(askOn(connection)(call(1)), { startImmediately: true })
      socket.push(null)
      const error = failureOf(yield* Fiber.await(asking))
      assert.instanceOf(error, RpcError.RecipientUnreachableError)
      assert.include((error as RpcError.RecipientUnreachableError).reason, "the peer hung up")
      yield* Fiber.join(running)
      assert.isTrue(socket.destroyed, "the socket is released")
    }))

  it.effect("bytes that cannot be framed close the connection", () =>
    Effect.gen(function*() {
      const { socket } = recordingSocket()
      const connection = new Connection(owner, "127.0.0.1:1", "inbound")
      const running = yield* Effect.forkChild(connection.run(socket, noClassify))
      socket.push(Buffer.from([0, 0, 0, 0]))
      yield* Fiber.join(running)
      assert.strictEqual(connection.closedBecause?.reason, "Unreachable")
      assert.include(connection.closedBecause?.detail, "a frame with an empty body")
    }))

  it.effect("a frame whose handling throws closes only its connection instead of escaping the socket callback", () =>
    Effect.gen(function*() {
      const { socket } = recordingSocket()
      const throwing: ConnectionOwner = {
        ...owner,
        lookup: () => {
          throw new Error("boom")
        }
      }
      const connection = new Connection(throwing, "127.0.0.1:1", "inbound")
      const running = yield* Effect.forkChild(connection.run(socket, noClassify))
      socket.push(Buffer.concat([
        ...chunksOf(Wire.hello("peer", "peer", null, 1024)),
        ...chunksOf(Wire.call(false, 1, "x", "Batch", "get", undefined, undefined, undefined, new Uint8Array(1)))
      ]))
      yield* Fiber.join(running)
      assert.strictEqual(connection.closedBecause?.reason, "Unreachable")
      assert.include(connection.closedBecause?.detail, "handling a frame failed unexpectedly (Error: boom)")
    }))
})

/** A socket like `recordingSocket`, but recording the messages written, and holding writes until `release`. */
const messageSocket = () => {
  const written: Array<Wire.Message> = []
  const held: Array<() => void> = []
  let holding = true
  const decoder = new Frame.FrameDecoder(1 << 26)
  const record = (chunk: Uint8Array) =>
    decoder.push(chunk, (body) => {
      const message = Wire.decode(body)
      if (!(message instanceof Wire.WireError)) written.push(message)
    })
  const done = (callback: () => void) => holding ? held.push(callback) : callback()
  const socket = new Duplex({
    writableHighWaterMark: 1,
    read() {},
    write(chunk: Buffer, _encoding, callback) {
      record(chunk)
      done(callback)
    },
    writev(chunks, callback) {
      for (const { chunk } of chunks) record(chunk as Buffer)
      done(callback)
    }
  })
  return {
    socket,
    written,
    of: <T extends Wire.Message["_tag"]>(tag: T) =>
      written.filter((message): message is Wire.Message & { readonly _tag: T } => message._tag === tag),
    /** Completes the writes so far; with `hold: false`, completes every later write at once too. */
    release: (options?: { readonly hold: boolean }) => {
      holding = options?.hold ?? true
      for (const callback of held.splice(0)) callback()
    },
    feed: (frame: Wire.OutFrame) => socket.push(Buffer.concat(chunksOf(frame)))
  }
}

const Bytes = RpcGateway.make("Bytes", { put: RpcGateway.ask({ payload: Schema.Uint8Array }) })

const bytesCall = (size: number) => ({ ...call(0), gateway: Bytes, method: "put", payload: new Uint8Array(size) })

const MiB = 1024 * 1024

describe("Connection flow control", () => {
  it.effect("requests beyond the peer's window wait, in order, for its credit; a forgotten one is never sent", () =>
    Effect.gen(function*() {
      const { socket, of, feed, release } = messageSocket()
      release({ hold: false })
      const connection = new Connection(owner, "127.0.0.1:1", "outbound")
      const running = yield* Effect.forkChild(connection.run(socket, noClassify))
      feed(Wire.hello("peer", "peer", null, 10 * MiB, Wire.MIN_WINDOW))
      yield* settle
      const asks = []
      for (let i = 0; i < 10; i++) {
        asks.push(yield* Effect.forkChild(askOn(connection)(bytesCall(MiB)), { startImmediately: true }))
      }
      yield* settle
      const cost = Wire.requestCost(Wire.call(false, 1, "x", "Bytes", "put", undefined, undefined, undefined, new Uint8Array(MiB + 5)).size)
      const fit = Math.floor(Wire.MIN_WINDOW / cost)
      assert.strictEqual(of("Ask").length, fit, "only what fits the window is sent")
      yield* Fiber.interrupt(asks[9]!)
      feed(Wire.credit(2 * cost))
      yield* settle
      assert.deepStrictEqual(of("Ask").map((ask) => ask.id), Array.from({ length: fit + 2 }, (_, i) => i + 1), "in order")
      feed(Wire.credit(cost))
      yield* settle
      assert.strictEqual(of("Ask").length, 9, "the interrupted ask was dropped while held, not sent")
      assert.strictEqual(of("Cancel").length, 0, "and needs no Cancel")
      connection.close({ reason: "Unreachable", detail: "test over" }, false)
      yield* Fiber.join(running)
    }))

  it.effect("a credit for more than is outstanding is a protocol error", () =>
    Effect.gen(function*() {
      const { socket, feed, release } = messageSocket()
      release({ hold: false })
      const connection = new Connection(owner, "127.0.0.1:1", "outbound")
      const running = yield* Effect.forkChild(connection.run(socket, noClassify))
      feed(Wire.hello("peer", "peer", null, 10 * MiB))
      feed(Wire.credit(1))
      yield* Fiber.join(running)
      assert.include(connection.closedBecause?.detail, "a credit of 1 bytes with only 0 outstanding")
    }))

  it.effect("while much is queued to the peer, its requests wait in order and are credited once handed over", () =>
    Effect.gen(function*() {
      const { socket, of, feed, release } = messageSocket()
      const connection = new Connection(owner, "127.0.0.1:1", "outbound")
      const running = yield* Effect.forkChild(connection.run(socket, noClassify))
      feed(Wire.hello("peer", "peer", null, 10 * MiB))
      yield* settle
      // This side's own 5 MiB ask fills the socket, which the test does not let drain.
      yield* Effect.forkChild(askOn(connection)(bytesCall(5 * MiB)), { startImmediately: true })
      yield* settle
      for (let id = 1; id <= 3; id++) feed(Wire.connect(id, `nobody-${id}`, "Batch", "f"))
      feed(Wire.heartbeat)
      feed(Wire.heartbeat)
      yield* settle
      assert.strictEqual(of("Connected").length, 0, "not answered while the backlog is large")
      assert.strictEqual(of("Heartbeat").filter((h) => h.reply).length, 0)
      // Requests worth more than a quarter of the window, behind the connects: tells to an unknown endpoint.
      const window = Wire.windowFor(RpcConfig.defaults.maximumFrameSize)
      for (let i = 0; i < 6; i++) {
        feed(Wire.call(true, 0, "nobody", "Bytes", "put", undefined, undefined, undefined, new Uint8Array(MiB)))
      }
      yield* settle
      release({ hold: false })
      yield* settle
      assert.deepStrictEqual(of("Connected").map((c) => c.id), [1, 2, 3], "answered in arrival order")
      assert.strictEqual(of("Heartbeat").filter((h) => h.reply).length, 1, "one answer stands for both heartbeats")
      const credited = of("Credit").reduce((sum, credit) => sum + credit.bytes, 0)
      assert.isAtLeast(credited, window / 4, "credits flow once requests are handed over")
      connection.close({ reason: "Unreachable", detail: "test over" }, false)
      yield* Fiber.join(running)
    }))

  it.effect("a peer that sends more than the window while much is queued to it is closed with a protocol error", () =>
    Effect.gen(function*() {
      const { socket, feed, release } = messageSocket()
      const connection = new Connection(owner, "127.0.0.1:1", "outbound")
      const running = yield* Effect.forkChild(connection.run(socket, noClassify))
      feed(Wire.hello("peer", "peer", null, 10 * MiB))
      yield* settle
      yield* Effect.forkChild(askOn(connection)(bytesCall(5 * MiB)), { startImmediately: true })
      yield* settle
      const window = Wire.windowFor(RpcConfig.defaults.maximumFrameSize)
      const tell = Wire.call(true, 0, "nobody", "Bytes", "put", undefined, undefined, undefined, new Uint8Array(MiB))
      const fit = Math.floor(window / Wire.requestCost(tell.size))
      for (let i = 0; i < fit; i++) feed(tell)
      yield* settle
      assert.strictEqual(connection.state, "open", "a full window is still within the rules")
      feed(tell)
      yield* settle
      assert.strictEqual(connection.state, "closed")
      assert.include(connection.closedBecause?.detail, "beyond the receive window")
      release({ hold: false })
      yield* Fiber.join(running)
    }))
})

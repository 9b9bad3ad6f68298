/**
 * The connection over an in-memory socket: frames queued while the writer waits go out in one write, and a
 * closing connection fails every call in flight at once.
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Exit, Fiber, Schema } from "effect"
import { Duplex } from "node:stream"
import { RpcConfig, RpcError, RpcGateway } from "effect-actor-rpc"
import { Connection, type ConnectionHost } from "../../src/internal/connection.js"
import { NoToken } from "../../src/internal/endpoint.js"
import * as Frame from "../../src/internal/frame.js"
import { Instruments } from "../../src/internal/metrics.js"
import * as Wire from "../../src/internal/wire.js"
import { settle } from "../fixtures/common.js"

const Gateway = RpcGateway.make("Batch", { get: RpcGateway.ask({ payload: Schema.Number, success: Schema.Number }) })

const host: ConnectionHost = {
  serviceName: "test",
  config: RpcConfig.defaults,
  incarnation: "i",
  authority: "127.0.0.1:1",
  protocol: "rpc",
  lookup: () => undefined,
  register: () => {},
  unregister: () => {},
  instruments: new Instruments(Context.empty(), false),
  tracing: false
}

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

const askOn = (connection: Connection) => (outbound: ReturnType<typeof call>) =>
  Effect.callback<unknown, unknown>((resume) => {
    const pending = connection.ask(outbound, resume)
    return pending === undefined ? undefined : Effect.sync(() => pending.cancel(true))
  })

const noClassify = () => ({ reason: "Unreachable" as const, detail: "" })

describe("Connection", () => {
  it.effect("frames queued in one turn go out in one write, however many calls are in flight", () =>
    Effect.gen(function*() {
      const { batches, socket } = recordingSocket()
      const connection = new Connection(host, "127.0.0.1:1", "outbound")
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
      const connection = new Connection(host, "127.0.0.1:1", "inbound")
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
      const connection = new Connection(host, "127.0.0.1:1", "outbound")
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
      const connection = new Connection(host, "127.0.0.1:1", "outbound")
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
      const connection = new Connection(host, "127.0.0.1:1", "inbound")
      const running = yield* Effect.forkChild(connection.run(socket, noClassify))
      socket.push(Buffer.from([0, 0, 0, 0]))
      yield* Fiber.join(running)
      assert.strictEqual(connection.closedBecause?.reason, "Unreachable")
      assert.include(connection.closedBecause?.detail, "a frame with an empty body")
    }))

  it.effect("a frame whose handling throws closes only its connection instead of escaping the socket callback", () =>
    Effect.gen(function*() {
      const { socket } = recordingSocket()
      const throwing: ConnectionHost = {
        ...host,
        lookup: () => {
          throw new Error("boom")
        }
      }
      const connection = new Connection(throwing, "127.0.0.1:1", "inbound")
      const running = yield* Effect.forkChild(connection.run(socket, noClassify))
      socket.push(Buffer.concat([
        ...chunksOf(Wire.hello("peer", "peer", null, 1024)),
        ...chunksOf(Wire.invoke(false, 1, "x", "Batch", "get", undefined, undefined, undefined, new Uint8Array(1)))
      ]))
      yield* Fiber.join(running)
      assert.strictEqual(connection.closedBecause?.reason, "Unreachable")
      assert.include(connection.closedBecause?.detail, "handling a frame failed unexpectedly (Error: boom)")
    }))
})

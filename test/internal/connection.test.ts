/**
 * The connection over an in-memory socket: frames queued while the writer waits go out in one write, and a
 * closing connection fails every call in flight at once.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Schema } from "effect"
import * as Socket from "effect/socket/Socket"
import { RpcConfig, RpcError, RpcGateway } from "effect-actor-rpc"
import { Connection, type ConnectionHost } from "../../src/internal/connection.js"
import { NoToken } from "../../src/internal/endpoint.js"
import * as Frame from "../../src/internal/frame.js"
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
  unregister: () => {}
}

/** A socket that never receives anything and records, for each write, how many frames it carried. */
const recordingSocket = () => {
  const batches: Array<number> = []
  const countFrames = (chunks: ReadonlyArray<Uint8Array | string>) => {
    const decoder = new Frame.FrameDecoder(1 << 20)
    let frames = 0
    for (const chunk of chunks) decoder.push(chunk as Uint8Array, () => void frames++)
    return frames
  }
  const socket = Socket.make({
    reader: Effect.succeed({ pull: Effect.never, upgrade: () => Effect.void }),
    writer: Effect.succeed({
      write: (chunk) => Effect.sync(() => void batches.push(countFrames([chunk as Uint8Array]))),
      writeAll: (chunks) => Effect.sync(() => void batches.push(countFrames(chunks)))
    })
  })
  return { batches, socket }
}

const call = (n: number) => ({
  address: "rpc://127.0.0.1:1/x",
  endpointId: "x",
  gateway: Gateway,
  method: "get",
  payload: n,
  token: NoToken
})

describe("Connection", () => {
  it.effect("frames queued in one turn go out in one write, however many calls are in flight", () =>
    Effect.gen(function*() {
      const { batches, socket } = recordingSocket()
      const connection = new Connection(host, "127.0.0.1:1", "outbound")
      const running = yield* Effect.forkChild(connection.run(socket, () => ({ reason: "Unreachable", detail: "" })))
      yield* settle
      assert.deepStrictEqual(batches, [1], "the hello")
      const ask = (outbound: ReturnType<typeof call>) =>
        Effect.callback<unknown, unknown>((resume) => {
          const forget = connection.ask(outbound, resume)
          return forget === undefined ? undefined : Effect.sync(forget)
        })
      const asks = []
      for (let i = 0; i < 200; i++) asks.push(yield* Effect.forkChild(ask(call(i)), { startImmediately: true }))
      yield* settle
      assert.deepStrictEqual(batches, [1, 200], "200 asks in one write")
      connection.close({ reason: "Unreachable", detail: "test over" }, false)
      const exits = yield* Effect.forEach(asks, Fiber.await)
      for (const exit of exits) {
        const error = Exit.isFailure(exit) && exit.cause.reasons[0]?._tag === "Fail" ? exit.cause.reasons[0].error : undefined
        assert.instanceOf(error, RpcError.RecipientUnreachableError)
        assert.include((error as RpcError.RecipientUnreachableError).reason, "test over")
      }
      yield* Fiber.join(running)
    }))

  it.effect("a heartbeat request is answered; a heartbeat reply is not", () =>
    Effect.gen(function*() {
      const { batches, socket } = recordingSocket()
      const connection = new Connection(host, "127.0.0.1:1", "inbound")
      const running = yield* Effect.forkChild(connection.run(socket, () => ({ reason: "Unreachable", detail: "" })))
      const feed = (frame: Wire.OutFrame) => (connection as unknown as { onFrame: (body: Uint8Array) => void }).onFrame(frame.bytes.subarray(Frame.HEADER_BYTES))
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
})

/**
 * One minimal reproduction per library bug the fuzzer found (catalogue.ts `knownBugs`). Each returns `undefined`
 * when the library behaves, or what went wrong. test/fuzz.test.ts runs them as `it.fails` tests (the one that
 * kills its process in a child process); `npx tsx test/fuzz/repro.ts <bug>` runs one on its own.
 */
import { Effect, Result, Schema } from "effect"
import { RpcEndpoint, RpcError, RpcService } from "effect-actor-rpc"
import * as Net from "node:net"
import * as V8 from "node:v8"
import * as Vm from "node:vm"
import * as Frame from "../../src/internal/frame.js"
import * as Wire from "../../src/internal/wire.js"
import { FENCED_ID, FencedGateway, FUZZ_ID, FuzzGateway, type KnownBug, randomSample, Sample, TOKEN } from "./catalogue.js"
import { fencedEndpoint, fuzzEndpoint } from "./fuzzer.js"
import * as G from "./generators.js"

const portOf = (address: string) => Number(/:(\d+)\//.exec(address)![1])

/** A server with the fuzzer's two endpoints and a client connected to both. */
const serverAndClient = Effect.gen(function*() {
  const server = yield* RpcService.makeTcp()
  yield* RpcEndpoint.scoped(fuzzEndpoint).pipe(Effect.provideService(RpcService.RpcService, server))
  yield* RpcEndpoint.scoped(fencedEndpoint).pipe(Effect.provideService(RpcService.RpcService, server))
  const client = yield* RpcService.makeTcp()
  const gateway = yield* client.connect(server.address(FUZZ_ID), FuzzGateway)
  const fenced = yield* client.connectFenced(server.address(FENCED_ID), TOKEN, FencedGateway)
  return { server, port: portOf(server.address(FUZZ_ID)), gateway, fenced }
}).pipe(Effect.orDie)

const hello = () => G.frameBytes(Wire.hello("repro", "repro", null, 1 << 20))

/** Sends `bytes` on a raw connection and collects the messages the server sends back for `ms` or until it closes. */
const exchange = (port: number, bytes: Uint8Array, ms: number, done: (messages: ReadonlyArray<Wire.Message>) => boolean) =>
  Effect.callback<ReadonlyArray<Wire.Message>>((resume) => {
    const messages: Array<Wire.Message> = []
    const decoder = new Frame.FrameDecoder(1 << 26)
    const socket = Net.connect({ host: "127.0.0.1", port }, () => socket.write(bytes))
    const finish = () => {
      clearTimeout(timer)
      socket.destroy()
      resume(Effect.succeed(messages))
    }
    const timer = setTimeout(finish, ms)
    socket.on("data", (chunk: Buffer) => {
      decoder.push(chunk, (body) => {
        const message = Wire.decode(body)
        if (!(message instanceof Wire.WireError)) messages.push(message)
      })
      if (done(messages)) finish()
    })
    socket.on("error", () => {})
    socket.on("close", finish)
    return Effect.sync(finish)
  })

const errorTags = (messages: ReadonlyArray<Wire.Message>) =>
  messages.flatMap((m) => {
    if (m._tag !== "Reply" || m.outcome !== Wire.Outcome.Error) return []
    const error = Wire.decodeValue(RpcError.RpcCallError, m.value)
    return Result.isSuccess(error) ? [(error.success as { _tag: string })._tag] : ["(undecodable)"]
  })

const sampleBytes = () => Result.getOrThrow(Wire.encodeValue(Sample, randomSample(new G.Rng(1))))

/** An Ask for FuzzGateway.constructor: the answer must be a MethodNotServedError, and the server must live on. */
export const inheritedMethodName: Effect.Effect<string | undefined> = Effect.scoped(Effect.gen(function*() {
  const { gateway, port } = yield* serverAndClient
  const ask = G.frameBytes(Wire.call(false, 1, FUZZ_ID, FuzzGateway.name, "constructor", undefined, undefined, undefined, sampleBytes()))
  const messages = yield* exchange(port, G.concat([hello(), ask]), 3000, (m) => errorTags(m).length > 0)
  const tags = errorTags(messages)
  const after = yield* Effect.exit(gateway.double(21))
  if (!tags.includes("MethodNotServedError")) return `no MethodNotServedError reply (got [${tags.join(", ")}])`
  if (after._tag === "Failure" || after.value !== 42) return "the server stopped answering"
  return undefined
}))

/** A frame body [[[...]]] nested 20 000 deep: Wire.decode must return a WireError, not throw. */
export const deepTypeCode: Effect.Effect<string | undefined> = Effect.sync(() => {
  const body = G.concat([new Uint8Array(20_000).fill(0x91), Uint8Array.of(0xc0)])
  try {
    const decoded = Wire.decode(body)
    return decoded instanceof Wire.WireError ? undefined : `decoded as ${decoded._tag}`
  } catch (error) {
    return `Wire.decode threw ${error instanceof Error ? `${error.name}: ${error.message}` : String(error)}`
  }
})

/** A fenced ask whose token is nested 20 000 deep: it must be answered with a FencingTokenError. */
export const deepToken: Effect.Effect<string | undefined> = Effect.scoped(Effect.gen(function*() {
  const { fenced, port } = yield* serverAndClient
  const payload = Result.getOrThrow(Wire.encodeValue(Schema.Number, 1))
  const fields = G.fieldsOf(Wire.call(false, 1, FENCED_ID, FencedGateway.name, "ping", { value: 0 }, undefined, undefined, payload))
  const at = fields.findIndex((f) => Array.isArray(f) && f.length === 1 && f[0] === 0)
  fields[at] = new G.Raw(G.concat([Uint8Array.of(0x91), new Uint8Array(20_000).fill(0x91), Uint8Array.of(0xc0)]))
  const messages = yield* exchange(port, G.concat([hello(), G.framed(G.packArray(fields))]), 3000, (m) => errorTags(m).length > 0)
  const tags = errorTags(messages)
  const after = yield* Effect.exit(fenced.ping(1))
  if (!tags.includes("FencingTokenError")) return `no FencingTokenError reply within 3 s (got [${tags.join(", ")}])`
  if (after._tag === "Failure" || after.value !== 2) return "the fenced endpoint stopped answering"
  return undefined
}))

const forcedGc = (): () => void => {
  const existing = (globalThis as { gc?: () => void }).gc
  if (typeof existing === "function") return existing
  V8.setFlagsFromString("--expose-gc")
  return Vm.runInNewContext("gc") as () => void
}

/**
 * A peer that sends 96 MiB of asks for 64 KiB replies and reads nothing: while it is connected, the server's memory
 * (heapUsed + external, after a forced GC) must not grow by more than 32 MiB.
 */
export const unreadReplies: Effect.Effect<string | undefined> = Effect.scoped(Effect.gen(function*() {
  const { port } = yield* serverAndClient
  const gc = forcedGc()
  const usage = () => {
    gc()
    gc()
    const m = process.memoryUsage()
    return m.heapUsed + m.external
  }
  const before = usage()
  const payload = Result.getOrThrow(Wire.encodeValue(Schema.Uint8Array, new Uint8Array(64 * 1024)))
  const ask = G.frameBytes(Wire.call(false, 1, FUZZ_ID, FuzzGateway.name, "bytes", undefined, undefined, undefined, payload))
  const growth = yield* Effect.callback<number>((resume) => {
    const socket = Net.connect({ host: "127.0.0.1", port }, () => {
      socket.pause()
      socket.write(hello())
      let sent = 0
      const pump = (): void => {
        if (socket.destroyed) return
        if (sent >= 96 * 1024 * 1024) {
          const grown = usage() - before
          socket.destroy()
          return resume(Effect.succeed(grown))
        }
        sent += ask.length
        if (socket.write(ask)) setImmediate(pump)
        else socket.once("drain", pump)
      }
      pump()
    })
    socket.on("error", () => {})
    socket.on("close", () => resume(Effect.succeed(usage() - before)))
    return Effect.sync(() => socket.destroy())
  })
  const MiB = 1024 * 1024
  return growth > 32 * MiB ? `the server's memory grew by ${(growth / MiB).toFixed(0)} MiB for a peer that reads nothing` : undefined
}))

export const reproductions: Record<KnownBug, Effect.Effect<string | undefined>> = {
  "inherited-method-name": inheritedMethodName,
  "deep-type-code": deepTypeCode,
  "deep-token": deepToken,
  "unread-replies": unreadReplies
}

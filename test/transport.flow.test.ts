/**
 * Flow control between two TCP services under large payloads in flight in both directions at once (issue 12).
 *
 * Before protocol version 4, a side stopped reading from its peer once 8 MiB were queued to it. A caller with
 * 256 asks of 64 KiB in flight (16 MiB) stopped reading the very replies it waited for; the callee, whose replies
 * were no longer read, stopped reading too: both waited on each other and every ask timed out. Each test here has
 * more than that in flight each way, checks that every reply arrives exactly once with its own bytes, and fails
 * within the asks' timeout if anything stalls.
 */
import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Schema } from "effect"
import { RpcConfig, RpcEndpoint, RpcGateway, RpcService } from "effect-actor-rpc"

const Bulk = RpcGateway.make("Bulk", {
  echo: RpcGateway.ask({ payload: Schema.Uint8Array, success: Schema.Uint8Array }),
  /** A tell that carries bytes: tells share the connection (and its order) with asks. */
  note: RpcGateway.tell({ payload: Schema.Uint8Array }),
  /** How many notes arrived, with the sum of their first words (proves none was lost or doubled). */
  notes: RpcGateway.ask({ success: Schema.Struct({ count: Schema.Number, sum: Schema.Number }) })
})

/** Every call a side served, by call number: each must be served exactly once. */
interface Served {
  readonly echoes: Map<number, number>
}

const bulkEndpoint = (served: Served) =>
  RpcEndpoint.make({
    id: "bulk",
    gateways: [Bulk],
    init: () =>
      Effect.sync(() => {
        let count = 0
        let sum = 0
        return {
          handlers: {
            echo: (bytes) =>
              Effect.sync(() => {
                const id = idOf(bytes)
                served.echoes.set(id, (served.echoes.get(id) ?? 0) + 1)
                return bytes
              }),
            note: (bytes) =>
              Effect.sync(() => {
                count++
                sum += idOf(bytes)
              }),
            notes: () => Effect.sync(() => ({ count, sum }))
          }
        }
      })
  })

/** A payload of `size` bytes (at least 8) whose first word is `id` and whose other bytes derive from it. */
const payloadOf = (id: number, size: number): Uint8Array => {
  const bytes = new Uint8Array(Math.max(8, size))
  new DataView(bytes.buffer).setUint32(0, id)
  for (let i = 4; i < bytes.length; i += 997) bytes[i] = (id * 31 + i) & 0xff
  bytes[bytes.length - 1] = id & 0xff
  return bytes
}

const idOf = (bytes: Uint8Array) => new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(0)

const sameBytes = (a: Uint8Array, b: Uint8Array) => {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}

const KiB = 1024
const MiB = 1024 * KiB

/** A deterministic generator, so that a failing mix can be replayed. */
const mulberry32 = (seed: number) => () => {
  seed = (seed + 0x6d2b79f5) | 0
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}

/** Two TCP services, each serving the bulk endpoint and holding a client of the other's. */
const pair = Effect.gen(function*() {
  const servedA: Served = { echoes: new Map() }
  const servedB: Served = { echoes: new Map() }
  const a = yield* RpcService.makeTcp({ name: "flow-a" })
  const b = yield* RpcService.makeTcp({ name: "flow-b" })
  for (const [service, served] of [[a, servedA], [b, servedB]] as const) {
    const server = yield* service.startServer(bulkEndpoint(served))
    yield* server.start
  }
  const toB = yield* a.connect(b.address("bulk"), Bulk)
  const toA = yield* b.connect(a.address("bulk"), Bulk)
  return { a, b, toA, toB, servedA, servedB }
})

/** Asks `sizes.length` echoes at once and checks each reply is its own payload; ids start at `first`. */
const echoAll = (client: RpcGateway.Client<typeof Bulk>, first: number, sizes: ReadonlyArray<number>) =>
  Effect.forEach(
    sizes,
    (size, index) => {
      const sent = payloadOf(first + index, size)
      return Effect.map(client.echo(sent), (received) => sameBytes(sent, received))
    },
    { concurrency: "unbounded" }
  ).pipe(Effect.map((matches) => matches.filter((same) => !same).length))

const config = { askTimeout: Duration.seconds(20), maximumFrameSize: 10 * MiB }

describe("flow control under large payloads in flight both ways", () => {
  it.live("256 asks of 64 KiB each way at once: every reply arrives once, with its own bytes", () =>
    Effect.gen(function*() {
      const { toA, toB, servedA, servedB } = yield* pair
      const sizes = Array.from({ length: 256 }, () => 64 * KiB)
      const [wrongAtB, wrongAtA] = yield* Effect.all([echoAll(toB, 0, sizes), echoAll(toA, 0, sizes)], {
        concurrency: "unbounded"
      })
      assert.strictEqual(wrongAtB + wrongAtA, 0, "every reply carries its own payload")
      for (const served of [servedA, servedB]) {
        assert.strictEqual(served.echoes.size, 256)
        assert.isTrue([...served.echoes.values()].every((times) => times === 1), "no call served twice")
      }
    }).pipe(Effect.scoped, Effect.provideService(RpcConfig.RpcConfig, { ...RpcConfig.defaults, ...config })), 60_000)

  it.live("mixed sizes up to 3 MiB, with tells between the asks, both ways at once: nothing lost, doubled or stalled", () =>
    Effect.gen(function*() {
      const { a, b, toA, toB, servedA, servedB } = yield* pair
      const random = mulberry32(12)
      const choices = [8, 1 * KiB, 64 * KiB, 64 * KiB, 256 * KiB, 1 * MiB, 3 * MiB]
      const mix = () => Array.from({ length: 160 }, () => choices[Math.floor(random() * choices.length)]!)
      const sizesToB = mix()
      const sizesToA = mix()
      const notes = (client: RpcGateway.Client<typeof Bulk>) =>
        Effect.forEach(Array.from({ length: 200 }, (_, i) => i), (i) => client.note(payloadOf(i, 48 * KiB)), {
          discard: true
        })
      const [wrongAtB, wrongAtA] = yield* Effect.all(
        [echoAll(toB, 1000, sizesToB), echoAll(toA, 1000, sizesToA), notes(toB), notes(toA)],
        { concurrency: "unbounded" }
      )
      assert.strictEqual(wrongAtB! + wrongAtA!, 0, "every reply carries its own payload")
      assert.strictEqual(servedB.echoes.size, sizesToB.length)
      assert.strictEqual(servedA.echoes.size, sizesToA.length)
      for (const served of [servedA, servedB]) {
        assert.isTrue([...served.echoes.values()].every((times) => times === 1), "no call served twice")
      }
      // Calls from one sender arrive in order, so this ask comes after every note.
      const expected = { count: 200, sum: (199 * 200) / 2 }
      assert.deepStrictEqual(yield* toB.notes(), expected)
      assert.deepStrictEqual(yield* toA.notes(), expected)
      // Nothing is left waiting on either side.
      for (const service of [a, b]) {
        const snapshot = yield* service.introspect
        assert.strictEqual(snapshot.inFlightCalls, 0)
        assert.isTrue(snapshot.connections.every((connection) => connection.callsIn === 0 && connection.callsOut === 0))
      }
    }).pipe(Effect.scoped, Effect.provideService(RpcConfig.RpcConfig, { ...RpcConfig.defaults, ...config })), 60_000)
})

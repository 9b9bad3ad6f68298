/**
 * The load engine behind `npm run load` (test/load/main.ts) and test/load.test.ts.
 *
 * A server RpcService (TCP on 127.0.0.1, port 0, or in-process with `transport: "local"`) hosts `endpoints` load
 * endpoints; a second RpcService of the same kind connects a client to each of them. Then:
 *
 * - **Phase 1, asks.** `asks` asks, all in flight at once, spread round-robin over the endpoints. Each carries a
 *   unique id and its reply must echo the id and the index of the endpoint it was sent to. The endpoints hold
 *   every reply (`RpcEndpoint.later`) until the last ask has arrived, so all of them really are in flight together.
 *   Checked: every id answered exactly once with its own id, none failed, and the endpoints saw every id once.
 * - **Phase 2, tells.** `tells` tells from `senders` concurrent sender fibers of the client service, each tell
 *   `[sender, sequence]` with a sequence that counts per sender and endpoint from 0. Each endpoint keeps, per
 *   sender, a bitset of the sequences seen and the highest one, so it counts duplicates and sequences that did not
 *   come right after the previous one. Pacing: a sender asks every endpoint (a barrier ask, which returns once the
 *   endpoint has handled everything the sender sent before it) after each `batch` tells, and waits for the
 *   barrier of the batch before the last one before it sends further, so at most two batches per sender are
 *   unacknowledged. Checked: the endpoints received exactly `tells`, each (sender, endpoint) pair exactly what was
 *   sent, no duplicate, no reordering, no sender failure, and nothing arrives later (a second look after a pause).
 * - **Phase 3, large payloads.** `bulkAsks` asks of mixed sizes from 64 KiB to `bulkMaxBytes`, all in flight at once
 *   *in both directions*: the client service asks a bulk endpoint of the server's and the server service one of the
 *   client's, at the same time (each service hosts one). Every reply must carry its ask's own bytes. Checked: every
 *   ask answered once with its own bytes, none failed (a stall shows as timeouts), each endpoint served each once.
 *   This is the load that deadlocked flow control before protocol version 4 (issue 12).
 * - **Heap.** heapUsed after forced garbage collection: at the start (for information: it predates the first use
 *   of the library's code), once the services are up and warmed up (the baseline), after the load with the
 *   services still up, and after the scope closed; and the highest heapUsed sampled (not collected) every 20 ms
 *   and at every barrier during each phase. The heap is "back to baseline" when both the after-load and the
 *   after-close figures are at most `heapBoundBytes` above the baseline.
 * - **Resources.** Node's active handles and requests by type (`process.getActiveResourcesInfo()`) at the start,
 *   after the load and after the scope closed: nothing the services opened (listening and connected sockets,
 *   timers) may be left once it has closed.
 * - **Introspection.** `RpcService.introspect` of both services, summed up: with every ask in flight (the client
 *   has exactly `asks` calls and timeouts pending; over TCP its connection has `asks` calls out and the server's
 *   `asks` calls in); after the load (nothing in flight, no timeout armed, every mailbox empty, nothing buffered,
 *   one open connection each way over TCP); and after the scope closed (no endpoint, connection, call or timeout
 *   left; both stopped).
 *
 * `run` fails only as a defect, when the services cannot be set up; everything that went wrong under load is a
 * line of `report.problems`.
 */
import { Deferred, Effect, Fiber, Schema } from "effect"
import { RpcConfig, RpcEndpoint, RpcGateway, RpcService } from "effect-actor-rpc"
import * as V8 from "node:v8"
import * as Vm from "node:vm"

/** What the load endpoints count; `stats` returns it. */
const Stats = Schema.Struct({
  asksReceived: Schema.Number,
  askDuplicates: Schema.Number,
  tellsReceived: Schema.Number,
  tellDuplicates: Schema.Number,
  tellsOutOfOrder: Schema.Number,
  /** Per sender: [sender, distinct sequences received]. */
  senders: Schema.Array(Schema.Tuple([Schema.Number, Schema.Number]))
})
type Stats = typeof Stats.Type

/** The protocol of the load endpoints. */
export const LoadGateway = RpcGateway.make("LoadGateway", {
  /** Replies [id, endpoint index], once every ask of the phase has arrived. */
  echo: RpcGateway.ask({ payload: Schema.Number, success: Schema.Tuple([Schema.Number, Schema.Number]) }),
  /** [sender, sequence]. */
  record: RpcGateway.tell({ payload: Schema.Tuple([Schema.Number, Schema.Number]) }),
  /** Returns the number of tells handled so far; handled after every earlier message from the same sender. */
  barrier: RpcGateway.ask({ payload: Schema.Number, success: Schema.Number }),
  /** The counts; with `true`, then forgets everything (counts and trackers) for the next phase. */
  stats: RpcGateway.ask({ payload: Schema.Boolean, success: Stats })
})

/** The protocol of the bulk endpoints (phase 3): bytes in, the same bytes back. */
export const BulkGateway = RpcGateway.make("BulkGateway", {
  echo: RpcGateway.ask({ payload: Schema.Uint8Array, success: Schema.Uint8Array })
})

/** How many times a bulk endpoint served each payload id (the first word of its bytes). */
type BulkServed = Map<number, number>

const bulkEndpoint = (served: BulkServed) =>
  RpcEndpoint.make({
    id: "bulk",
    gateways: [BulkGateway],
    init: () =>
      Effect.succeed({
        handlers: {
          echo(bytes: Uint8Array) {
            return Effect.sync(() => {
              const id = bulkId(bytes)
              served.set(id, (served.get(id) ?? 0) + 1)
              return bytes
            })
          }
        }
      })
  })

/** The id a bulk payload carries in its first four bytes. */
const bulkId = (bytes: Uint8Array) => new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(0)

/** The bulk payload sizes, in a fixed cycle: mostly 64 KiB, with larger ones up to `max` among them. */
const bulkSize = (index: number, max: number) => {
  const cycle = [64, 64, 64, 256, 64, 64, 1024, 64, 2048, 64, 512, 4096].map((kib) => kib * 1024)
  return Math.min(cycle[index % cycle.length]!, max)
}

/** A payload of `size` bytes: the id first, then bytes derived from it, so that a crossed reply shows. */
const bulkPayload = (id: number, size: number) => {
  const bytes = new Uint8Array(size)
  new DataView(bytes.buffer).setUint32(0, id)
  for (let i = 4; i < size; i += 251) bytes[i] = (id + i) & 0xff
  bytes[size - 1] = id & 0xff
  return bytes
}

const sameBulk = (a: Uint8Array, b: Uint8Array) => {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i += 251) if (a[i] !== b[i]) return false
  return a[a.length - 1] === b[b.length - 1]
}

/**
 * The gate that holds the echo replies of a phase until all of its asks have arrived at the endpoints (shared by
 * the endpoints of one run; they live in this process even over TCP).
 */
class AskGate {
  expected = 0
  arrived = 0
  openedBy: "count" | "watchdog" | undefined = undefined
  openedAt = 0
  /** heapUsed after a forced collection at the moment the last ask arrived, all of them in flight. */
  heldHeap = 0
  /** How long the collection for `heldHeap` and the snapshots took: not part of the phase's wall time. */
  gcMillis = 0
  measure = false
  /** Runs synchronously when the last ask has arrived, before any reply is released. */
  onFull: (() => void) | undefined = undefined
  deferred = Deferred.makeUnsafe<void>()

  reset(expected: number): void {
    this.expected = expected
    this.arrived = 0
    this.openedBy = undefined
    this.openedAt = 0
    this.heldHeap = 0
    this.gcMillis = 0
    this.deferred = Deferred.makeUnsafe<void>()
  }

  arrive(): Deferred.Deferred<void> {
    const deferred = this.deferred
    if (++this.arrived === this.expected) {
      this.openedAt = performance.now()
      if (this.measure) {
        gcFunction()()
        this.heldHeap = process.memoryUsage().heapUsed
        this.onFull?.()
        this.gcMillis = performance.now() - this.openedAt
      }
      this.open("count")
    }
    return deferred
  }

  open(by: "count" | "watchdog"): void {
    if (this.openedBy !== undefined) return
    this.openedBy = by
    if (by === "watchdog") this.openedAt = performance.now()
    Deferred.doneUnsafe(this.deferred, Effect.void)
  }
}

/** What one endpoint knows of one sender's tells. */
interface SenderTrack {
  highest: number
  distinct: number
  bits: Uint8Array
}

const loadEndpoint = (index: number, gate: AskGate) =>
  RpcEndpoint.make({
    id: `load-${index}`,
    gateways: [LoadGateway],
    init: () =>
      Effect.sync(() => {
        let askIds = new Set<number>()
        let asksReceived = 0
        let askDuplicates = 0
        let tellsReceived = 0
        let tellDuplicates = 0
        let tellsOutOfOrder = 0
        let senders = new Map<number, SenderTrack>()
        const track = (sender: number): SenderTrack => {
          let entry = senders.get(sender)
          if (entry === undefined) {
            entry = { highest: -1, distinct: 0, bits: new Uint8Array(64) }
            senders.set(sender, entry)
          }
          return entry
        }
        // Method shorthand: tsx's keepNames would wrap every named arrow closure in an Object.defineProperty.
        return {
          handlers: {
            echo(id: number) {
              return Effect.sync(() => {
                asksReceived++
                if (askIds.has(id)) askDuplicates++
                else askIds.add(id)
                const reply: readonly [number, number] = [id, index]
                return RpcEndpoint.later(Effect.as(Deferred.await(gate.arrive()), reply))
              })
            },
            record(payload: readonly [number, number]) {
              return Effect.sync(() => {
                const sender = payload[0]
                const sequence = payload[1]
                tellsReceived++
                const entry = track(sender)
                const byte = sequence >>> 3
                if (byte >= entry.bits.length) {
                  const grown = new Uint8Array(Math.max(entry.bits.length * 2, byte + 1))
                  grown.set(entry.bits)
                  entry.bits = grown
                }
                const mask = 1 << (sequence & 7)
                if ((entry.bits[byte]! & mask) !== 0) {
                  tellDuplicates++
                  return
                }
                entry.bits[byte] = entry.bits[byte]! | mask
                entry.distinct++
                if (sequence !== entry.highest + 1) tellsOutOfOrder++
                if (sequence > entry.highest) entry.highest = sequence
              })
            },
            barrier(_sender: number) {
              return Effect.sync(() => tellsReceived)
            },
            stats(reset: boolean) {
              return Effect.sync((): Stats => {
                const stats: Stats = {
                  asksReceived,
                  askDuplicates,
                  tellsReceived,
                  tellDuplicates,
                  tellsOutOfOrder,
                  senders: Array.from(senders, ([sender, entry]) => [sender, entry.distinct] as const)
                }
                if (reset) {
                  askIds = new Set()
                  senders = new Map()
                  asksReceived = askDuplicates = tellsReceived = tellDuplicates = tellsOutOfOrder = 0
                }
                return stats
              })
            }
          }
        }
      })
  })

/** Options of a load run. */
export interface LoadOptions {
  /** Endpoints on the server service (100). */
  readonly endpoints: number
  /** Concurrent asks of phase 1, all in flight at once (10,000). */
  readonly asks: number
  /** Tells of phase 2 (1,000,000). */
  readonly tells: number
  /** "tcp" (two TCP services on 127.0.0.1) or "local" (two in-process services). */
  readonly transport: "tcp" | "local"
  /** Concurrent sender fibers of phase 2 (4). */
  readonly senders: number
  /** Tells a sender sends between two barriers (10,000). */
  readonly batch: number
  /** Asks of phase 3 in each direction, all in flight at once (256 each way). */
  readonly bulkAsks: number
  /** The largest payload of phase 3 (4 MiB); sizes cycle from 64 KiB up to it. */
  readonly bulkMaxBytes: number
  /** A warm-up of up to 1,000 asks and 10,000 tells before the baseline is taken (true). */
  readonly warmup: boolean
  /** How far above the baseline the heap may end (2 MiB; docs/RELIABILITY.md says why). */
  readonly heapBoundBytes: number
  /** Timeout of each echo ask (60 s); the gate opens anyway after half of it. */
  readonly askTimeoutMillis: number
  /** Overrides of the services' RpcConfig (none: the defaults, call-site capture and metrics on). */
  readonly config?: Partial<RpcConfig.RpcConfig> | undefined
  /** Replaces the client of each endpoint (the suite injects faults this way to show that the checks catch them). */
  readonly wrapClient?: ((client: LoadClient, endpoint: number) => LoadClient) | undefined
  /** Progress lines; silent by default. */
  readonly log?: ((line: string) => void) | undefined
}

export const defaults: LoadOptions = {
  endpoints: 100,
  asks: 10_000,
  tells: 1_000_000,
  transport: "tcp",
  senders: 4,
  batch: 10_000,
  bulkAsks: 256,
  bulkMaxBytes: 4 * 1024 * 1024,
  warmup: true,
  heapBoundBytes: 2 * 1024 * 1024,
  askTimeoutMillis: 60_000
}

/** Phase 1's figures. */
export interface AskReport {
  readonly count: number
  /** From the first ask until the last reply, less the forced collection at the gate (heap.asksInFlight). */
  readonly wallMs: number
  /** From the first ask until the last one had reached its endpoint and the gate opened. */
  readonly arrivalMs: number
  readonly perSecond: number
  /** Asks that succeeded with their own id from their own endpoint. */
  readonly answered: number
  readonly failed: number
  /** Replies carrying another id or another endpoint's index. */
  readonly mismatched: number
  /** Ids answered more than once, and never. */
  readonly duplicated: number
  readonly missing: number
  /** Asks the endpoints' handlers saw, and ids they saw more than once. */
  readonly serverReceived: number
  readonly serverDuplicates: number
  /** Did the gate open because every ask had arrived (all in flight at once), or because the watchdog fired? */
  readonly gateOpenedBy: "count" | "watchdog" | "never"
  /** The first few failures, as text. */
  readonly failures: ReadonlyArray<string>
}

/** Phase 2's figures. */
export interface TellReport {
  readonly count: number
  /** Tells the senders sent without error. */
  readonly sent: number
  /** From the first tell until every endpoint had handled the last one. */
  readonly wallMs: number
  readonly perSecond: number
  readonly received: number
  readonly duplicates: number
  readonly outOfOrder: number
  /** Sent minus distinct received, summed over (sender, endpoint) pairs, and pairs where they differ. */
  readonly lost: number
  readonly mismatchedPairs: number
  /** Tells counted by the endpoints after the final count (a second look after a pause). */
  readonly late: number
  readonly barriers: number
  readonly senderFailures: ReadonlyArray<string>
}

/** Phase 3's figures, both directions together. */
export interface BulkReport {
  /** Asks in each direction. */
  readonly perDirection: number
  /** Payload bytes sent, both directions (each comes back once more as its reply). */
  readonly bytes: number
  readonly wallMs: number
  /** Payload and reply bytes per second, both directions. */
  readonly bytesPerSecond: number
  readonly answered: number
  readonly failed: number
  /** Replies whose bytes were not their ask's own. */
  readonly mismatched: number
  /** Ids the bulk endpoints served more than once, and never. */
  readonly servedTwice: number
  readonly neverServed: number
  readonly failures: ReadonlyArray<string>
}

/** heapUsed in bytes; all but `peak` after forced garbage collection. */
export interface HeapReport {
  readonly start: number
  readonly baseline: number
  /** The highest sampled heapUsed during the whole load, during the asks, and during the tells. */
  readonly peak: number
  readonly peakAsks: number
  readonly peakTells: number
  /** After a forced collection at the moment every ask of phase 1 was in flight (0 if the gate never filled). */
  readonly asksInFlight: number
  readonly afterLoad: number
  readonly afterClose: number
  readonly boundBytes: number
}

/** A service's `introspect` snapshot, summed up. */
export interface SnapshotSummary {
  readonly lifecycle: string
  readonly endpoints: number
  /** Endpoints by state. */
  readonly endpointStates: Readonly<Record<string, number>>
  /** Messages queued over all endpoints, and the deepest mailbox. */
  readonly mailboxDepth: number
  readonly maxMailboxDepth: number
  readonly connections: number
  /** Connections by direction and state ("outbound open"). */
  readonly connectionStates: Readonly<Record<string, number>>
  readonly callsOut: number
  readonly callsIn: number
  readonly bufferedBytes: number
  readonly inFlightCalls: number
  readonly pendingTimeouts: number
}

/** The client's and the server's snapshots at three moments. */
export interface IntrospectionReport {
  /** When the last ask of phase 1 had reached its endpoint and no reply had been released: all in flight. */
  readonly allAsksInFlight: { readonly client: SnapshotSummary; readonly server: SnapshotSummary } | undefined
  readonly afterLoad: { readonly client: SnapshotSummary; readonly server: SnapshotSummary }
  readonly afterClose: { readonly client: SnapshotSummary; readonly server: SnapshotSummary }
}

/** Node's active resources (handles and requests) by type, as `process.getActiveResourcesInfo()` lists them. */
export interface ResourceReport {
  readonly start: Readonly<Record<string, number>>
  /** With the services up and the load done. */
  readonly afterLoad: Readonly<Record<string, number>>
  readonly afterClose: Readonly<Record<string, number>>
}

export interface LoadReport {
  readonly options: Omit<LoadOptions, "log" | "wrapClient">
  readonly setupMs: number
  readonly resources: ResourceReport
  readonly introspection: IntrospectionReport
  readonly asks: AskReport
  readonly tells: TellReport
  readonly bulk: BulkReport
  readonly heap: HeapReport
  readonly problems: ReadonlyArray<string>
}

/** A client of a load endpoint. */
export type LoadClient = RpcGateway.Client<typeof LoadGateway>
type Client = LoadClient

/** The `gc` function: Node's with --expose-gc, else exposed at run time (works in vitest workers too). */
const gcFunction = (): () => void => {
  const exposed = (globalThis as { gc?: () => void }).gc
  if (exposed !== undefined) return exposed
  V8.setFlagsFromString("--expose-gc")
  return Vm.runInNewContext("gc") as () => void
}

const nextTurn = Effect.promise(() => new Promise<void>((resolve) => setImmediate(resolve)))

/** heapUsed once garbage is collected; the event loop turns in between so deferred cleanup (closed sockets) runs. */
const collect = Effect.gen(function*() {
  const gc = gcFunction()
  for (let i = 0; i < 4; i++) {
    gc()
    yield* nextTurn
  }
  gc()
  return process.memoryUsage().heapUsed
})

/** Samples heapUsed (not collected) every 20 ms until stopped; returns the highest value. */
const startPeakSampler = () => {
  let peak = process.memoryUsage().heapUsed
  const sample = () => {
    const used = process.memoryUsage().heapUsed
    if (used > peak) peak = used
  }
  const timer = setInterval(sample, 20)
  timer.unref()
  return {
    sample,
    stop: (): number => {
      clearInterval(timer)
      sample()
      return peak
    }
  }
}

const describeCause = (error: unknown): string => {
  if (typeof error === "object" && error !== null && "_tag" in error) {
    const message = "message" in error ? String(error.message) : ""
    return `${String(error._tag)}: ${message}`
  }
  return String(error)
}

const tally = (keys: Iterable<string>): Record<string, number> => {
  const counts: Record<string, number> = {}
  for (const key of keys) counts[key] = (counts[key] ?? 0) + 1
  return counts
}

const summarize = (snapshot: RpcService.Snapshot): SnapshotSummary => ({
  lifecycle: snapshot.lifecycle,
  endpoints: snapshot.endpoints.length,
  endpointStates: tally(snapshot.endpoints.map((endpoint) => endpoint.state)),
  mailboxDepth: snapshot.endpoints.reduce((sum, endpoint) => sum + endpoint.mailboxDepth, 0),
  maxMailboxDepth: snapshot.endpoints.reduce((max, endpoint) => Math.max(max, endpoint.mailboxDepth), 0),
  connections: snapshot.connections.length,
  connectionStates: tally(snapshot.connections.map((connection) => `${connection.direction} ${connection.state}`)),
  callsOut: snapshot.connections.reduce((sum, connection) => sum + connection.callsOut, 0),
  callsIn: snapshot.connections.reduce((sum, connection) => sum + connection.callsIn, 0),
  bufferedBytes: snapshot.connections.reduce((sum, connection) => sum + connection.bufferedBytes, 0),
  inFlightCalls: snapshot.inFlightCalls,
  pendingTimeouts: snapshot.pendingTimeouts
})

const activeResources = (): Record<string, number> => {
  const counts: Record<string, number> = {}
  for (const type of process.getActiveResourcesInfo()) counts[type] = (counts[type] ?? 0) + 1
  return counts
}

const MiB = 1024 * 1024
const mib = (bytes: number) => `${(bytes / MiB).toFixed(2)} MiB`

/** Phase 1: `count` asks at once, id i to endpoint i mod N. */
const askPhase = (clients: ReadonlyArray<Client>, gate: AskGate, count: number, timeoutMillis: number) =>
  Effect.gen(function*() {
    const n = clients.length
    const answers = new Uint8Array(count)
    let answered = 0
    let failed = 0
    let mismatched = 0
    const failures: Array<string> = []
    yield* Effect.forEach(clients, (client) => client.stats(true), { concurrency: "unbounded", discard: true })
    gate.reset(count)
    // If some ask never arrives, the gate opens anyway after half the ask timeout, so the report can tell the
    // lost asks (they time out) from the rest (they are answered).
    const watchdog = yield* Effect.forkChild(
      Effect.andThen(Effect.sleep(timeoutMillis / 2), Effect.sync(() => gate.open("watchdog")))
    )
    const options = { timeout: timeoutMillis }
    const started = performance.now()
    yield* Effect.forEach(
      Array.from({ length: count }, (_, id) => id),
      (id) =>
        Effect.map(Effect.result(clients[id % n]!.echo(id, options)), (result) => {
          if (result._tag === "Failure") {
            failed++
            if (failures.length < 5) failures.push(`ask ${id}: ${describeCause(result.failure)}`)
            return
          }
          const [replyId, endpoint] = result.success
          if (replyId !== id || endpoint !== id % n) {
            mismatched++
            if (failures.length < 5) failures.push(`ask ${id} to endpoint ${id % n}: reply [${replyId}, ${endpoint}]`)
            return
          }
          answers[id] = Math.min(answers[id]! + 1, 255)
          answered++
        }),
      { concurrency: "unbounded", discard: true }
    )
    const wallMs = performance.now() - started - gate.gcMillis
    yield* Fiber.interrupt(watchdog)
    let duplicated = 0
    let missing = 0
    for (let id = 0; id < count; id++) {
      if (answers[id] === 0) missing++
      else if (answers[id]! > 1) duplicated++
    }
    const stats = yield* Effect.forEach(clients, (client) => client.stats(true), { concurrency: "unbounded" })
    const report: AskReport = {
      count,
      wallMs,
      arrivalMs: gate.openedAt === 0 ? 0 : gate.openedAt - started,
      perSecond: count / (wallMs / 1000),
      answered,
      failed,
      mismatched,
      duplicated,
      missing,
      serverReceived: stats.reduce((sum, s) => sum + s.asksReceived, 0),
      serverDuplicates: stats.reduce((sum, s) => sum + s.askDuplicates, 0),
      gateOpenedBy: gate.openedBy ?? "never",
      failures
    }
    return report
  })

/** Phase 2: `count` tells from `senders` fibers, paced by barrier asks after every `batch` tells. */
const tellPhase = (
  clients: ReadonlyArray<Client>,
  count: number,
  senders: number,
  batch: number,
  sample: () => void = () => {}
) =>
  Effect.gen(function*() {
    const n = clients.length
    // sent[sender * n + endpoint]: the next sequence, which is also the number sent without error.
    const sent = new Float64Array(senders * n)
    const senderFailures: Array<string> = []
    let barriers = 0
    yield* Effect.forEach(clients, (client) => client.stats(true), { concurrency: "unbounded", discard: true })
    const barrierAll = (sender: number) =>
      Effect.forEach(clients, (client) => client.barrier(sender), { concurrency: "unbounded", discard: true })
    const send = (sender: number, quota: number) =>
      Effect.gen(function*() {
        let endpoint = sender % n
        let done = 0
        let previous: Fiber.Fiber<void, unknown> | undefined = undefined
        while (done < quota) {
          const size = Math.min(batch, quota - done)
          for (let i = 0; i < size; i++) {
            const slot = sender * n + endpoint
            yield* clients[endpoint]!.record([sender, sent[slot]!])
            sent[slot]!++
            if (++endpoint === n) endpoint = 0
          }
          done += size
          sample()
          const current = yield* Effect.forkChild(barrierAll(sender))
          barriers += n
          if (previous !== undefined) yield* Fiber.join(previous)
          previous = current
        }
        if (previous !== undefined) yield* Fiber.join(previous)
      }).pipe(
        Effect.catchCause((cause) => Effect.sync(() => void senderFailures.push(`sender ${sender}: ${String(cause)}`)))
      )
    const started = performance.now()
    yield* Effect.forEach(
      Array.from({ length: senders }, (_, sender) => sender),
      (sender) => send(sender, Math.floor(count / senders) + (sender < count % senders ? 1 : 0)),
      { concurrency: "unbounded", discard: true }
    )
    const wallMs = performance.now() - started
    const stats = yield* Effect.forEach(clients, (client) => client.stats(false), { concurrency: "unbounded" })
    let lost = 0
    let mismatchedPairs = 0
    for (let endpoint = 0; endpoint < n; endpoint++) {
      const distinct = new Map(stats[endpoint]!.senders.map(([sender, count]) => [sender, count]))
      for (let sender = 0; sender < senders; sender++) {
        const expected = sent[sender * n + endpoint]!
        const got = distinct.get(sender) ?? 0
        if (got !== expected) mismatchedPairs++
        lost += expected - got
      }
    }
    // A second look after a pause: nothing may arrive after every barrier has returned.
    yield* Effect.sleep(200)
    const again = yield* Effect.forEach(clients, (client) => client.stats(true), { concurrency: "unbounded" })
    const received = stats.reduce((sum, s) => sum + s.tellsReceived, 0)
    const report: TellReport = {
      count,
      sent: sent.reduce((sum, k) => sum + k, 0),
      wallMs,
      perSecond: count / (wallMs / 1000),
      received,
      duplicates: stats.reduce((sum, s) => sum + s.tellDuplicates, 0),
      outOfOrder: stats.reduce((sum, s) => sum + s.tellsOutOfOrder, 0),
      lost,
      mismatchedPairs,
      late: again.reduce((sum, s) => sum + s.tellsReceived, 0) - received,
      barriers,
      senderFailures
    }
    return report
  })

/** Phase 3: `count` asks each way at once, client → server's bulk endpoint and server → client's. */
const bulkPhase = (
  directions: ReadonlyArray<{ readonly client: RpcGateway.Client<typeof BulkGateway>; readonly served: BulkServed }>,
  count: number,
  maxBytes: number,
  timeoutMillis: number
) =>
  Effect.gen(function*() {
    let answered = 0
    let failed = 0
    let mismatched = 0
    let bytes = 0
    const failures: Array<string> = []
    for (const { served } of directions) served.clear()
    const asks = directions.flatMap(({ client }) =>
      Array.from({ length: count }, (_, id) => {
        const payload = bulkPayload(id, bulkSize(id, maxBytes))
        bytes += payload.length
        return Effect.map(Effect.result(client.echo(payload, { timeout: timeoutMillis })), (result) => {
          if (result._tag === "Failure") {
            failed++
            if (failures.length < 5) failures.push(`bulk ${id} (${payload.length} B): ${describeCause(result.failure)}`)
          } else if (!sameBulk(payload, result.success)) {
            mismatched++
            if (failures.length < 5) failures.push(`bulk ${id}: the reply carried other bytes`)
          } else answered++
        })
      })
    )
    const started = performance.now()
    yield* Effect.all(asks, { concurrency: "unbounded", discard: true })
    const wallMs = performance.now() - started
    let servedTwice = 0
    let neverServed = 0
    for (const { served } of directions) {
      for (let id = 0; id < count; id++) {
        const times = served.get(id) ?? 0
        if (times === 0) neverServed++
        else if (times > 1) servedTwice++
      }
    }
    const report: BulkReport = {
      perDirection: count,
      bytes,
      wallMs,
      bytesPerSecond: (2 * bytes) / (wallMs / 1000),
      answered,
      failed,
      mismatched,
      servedTwice,
      neverServed,
      failures
    }
    return report
  })

const bulkProblems = (report: BulkReport): Array<string> => {
  const problems: Array<string> = []
  const expected = report.perDirection * 2
  if (report.answered !== expected) problems.push(`bulk: ${report.answered} of ${expected} answered with their own bytes`)
  if (report.failed > 0) problems.push(`bulk: ${report.failed} failed (${report.failures.join("; ")})`)
  if (report.mismatched > 0) problems.push(`bulk: ${report.mismatched} replies carried other bytes`)
  if (report.servedTwice > 0) problems.push(`bulk: ${report.servedTwice} payloads served twice`)
  if (report.neverServed > 0) problems.push(`bulk: ${report.neverServed} payloads never served`)
  return problems
}

const askProblems = (report: AskReport): Array<string> => {
  const problems: Array<string> = []
  if (report.answered !== report.count) problems.push(`asks: ${report.answered} of ${report.count} answered correctly`)
  if (report.failed > 0) problems.push(`asks: ${report.failed} failed (${report.failures.join("; ")})`)
  if (report.mismatched > 0) problems.push(`asks: ${report.mismatched} replies carried another id or endpoint`)
  if (report.duplicated > 0) problems.push(`asks: ${report.duplicated} ids answered more than once`)
  if (report.missing > 0) problems.push(`asks: ${report.missing} ids never answered`)
  if (report.serverReceived !== report.count) {
    problems.push(`asks: the endpoints received ${report.serverReceived}, expected ${report.count}`)
  }
  if (report.serverDuplicates > 0) problems.push(`asks: the endpoints saw ${report.serverDuplicates} ids twice`)
  if (report.count > 0 && report.gateOpenedBy !== "count") {
    problems.push(`asks: not all in flight at once: the gate opened by ${report.gateOpenedBy}`)
  }
  return problems
}

const tellProblems = (report: TellReport): Array<string> => {
  const problems: Array<string> = []
  if (report.senderFailures.length > 0) problems.push(`tells: ${report.senderFailures.join("; ")}`)
  if (report.sent !== report.count) problems.push(`tells: ${report.sent} of ${report.count} sent`)
  if (report.received !== report.count) problems.push(`tells: the endpoints received ${report.received}, expected ${report.count}`)
  if (report.duplicates > 0) problems.push(`tells: ${report.duplicates} duplicates`)
  if (report.outOfOrder > 0) problems.push(`tells: ${report.outOfOrder} out of order`)
  if (report.lost !== 0 || report.mismatchedPairs > 0) {
    problems.push(`tells: ${report.lost} lost over ${report.mismatchedPairs} (sender, endpoint) pairs`)
  }
  if (report.late !== 0) problems.push(`tells: ${report.late} arrived after the final count`)
  return problems
}

const heapProblems = (heap: HeapReport): Array<string> => {
  const problems: Array<string> = []
  if (heap.afterLoad - heap.baseline > heap.boundBytes) {
    problems.push(
      `heap: ${mib(heap.afterLoad)} after the load, ${mib(heap.afterLoad - heap.baseline)} above the baseline ` +
        `(${mib(heap.baseline)}; bound ${mib(heap.boundBytes)})`
    )
  }
  if (heap.afterClose - heap.baseline > heap.boundBytes) {
    problems.push(
      `heap: ${mib(heap.afterClose)} after the scope closed, ${mib(heap.afterClose - heap.baseline)} above the ` +
        `baseline (${mib(heap.baseline)}; bound ${mib(heap.boundBytes)})`
    )
  }
  return problems
}

const introspectionProblems = (introspection: IntrospectionReport, options: LoadOptions): Array<string> => {
  const problems: Array<string> = []
  const expect = (moment: string, side: string, field: string, actual: unknown, expected: unknown) => {
    if (JSON.stringify(actual) !== JSON.stringify(expected)) {
      problems.push(`introspect ${moment}, ${side}: ${field} is ${JSON.stringify(actual)}, expected ${JSON.stringify(expected)}`)
    }
  }
  const tcp = options.transport === "tcp"
  const atGate = introspection.allAsksInFlight
  if (options.asks > 0) {
    if (atGate === undefined) problems.push("introspect: no snapshot with every ask in flight (the gate never filled)")
    else {
      expect("with every ask in flight", "client", "inFlightCalls", atGate.client.inFlightCalls, options.asks)
      expect("with every ask in flight", "client", "pendingTimeouts", atGate.client.pendingTimeouts, options.asks)
      expect("with every ask in flight", "client", "callsOut", atGate.client.callsOut, tcp ? options.asks : 0)
      expect("with every ask in flight", "server", "callsIn", atGate.server.callsIn, tcp ? options.asks : 0)
      expect("with every ask in flight", "server", "inFlightCalls", atGate.server.inFlightCalls, 0)
    }
  }
  for (const [side, summary] of Object.entries(introspection.afterLoad)) {
    for (const field of ["inFlightCalls", "pendingTimeouts", "mailboxDepth", "callsOut", "callsIn", "bufferedBytes"] as const) {
      expect("after the load", side, field, summary[field], 0)
    }
    expect("after the load", side, "lifecycle", summary.lifecycle, "running")
    expect("after the load", side, "connectionStates", summary.connectionStates,
      tcp ? { [side === "client" ? "outbound open" : "inbound open"]: 1 } : {})
  }
  // Besides the load endpoints, each service hosts one bulk endpoint (phase 3).
  expect("after the load", "server", "endpointStates", introspection.afterLoad.server.endpointStates,
    { started: options.endpoints + 1 })
  expect("after the load", "client", "endpoints", introspection.afterLoad.client.endpoints, 1)
  for (const [side, summary] of Object.entries(introspection.afterClose)) {
    for (const field of ["endpoints", "connections", "inFlightCalls", "pendingTimeouts", "mailboxDepth"] as const) {
      expect("after the scope closed", side, field, summary[field], 0)
    }
    expect("after the scope closed", side, "lifecycle", summary.lifecycle, "stopped")
  }
  return problems
}

const resourceProblems = (resources: ResourceReport): Array<string> =>
  Object.entries(resources.afterClose)
    .filter(([type, count]) => count > (resources.start[type] ?? 0))
    .map(([type, count]) => `resources: ${count} ${type} after the scope closed, ${resources.start[type] ?? 0} at the start`)

/** Runs the load and reports; dies only if the services cannot be set up. */
export const run = (partial: Partial<LoadOptions> = {}): Effect.Effect<LoadReport> =>
  Effect.gen(function*() {
    const options: LoadOptions = { ...defaults, ...partial }
    const log = options.log ?? (() => {})
    const start = yield* collect
    const resourcesAtStart = activeResources()
    let resourcesAfterLoad: Record<string, number> = {}
    let clientService: RpcService.RpcServiceShape | undefined
    let serverService: RpcService.RpcServiceShape | undefined
    let allAsksInFlight: IntrospectionReport["allAsksInFlight"] = undefined
    let introspectionAfterLoad: IntrospectionReport["afterLoad"] | undefined
    let baseline = 0
    let peakAsks = 0
    let peakTells = 0
    let asksInFlight = 0
    let afterLoad = 0
    let setupMs = 0
    const phases = yield* Effect.scoped(Effect.gen(function*() {
      const setupStarted = performance.now()
      const make = (options.transport === "tcp" ? RpcService.makeTcp() : RpcService.makeLocal()).pipe(
        Effect.provideService(RpcConfig.RpcConfig, { ...RpcConfig.defaults, ...options.config })
      )
      const server = yield* make
      const client = yield* make
      const gate = new AskGate()
      const snapshot = () => ({
        client: summarize(Effect.runSync(client.introspect)),
        server: summarize(Effect.runSync(server.introspect))
      })
      clientService = client
      serverService = server
      const servers = yield* Effect.forEach(
        Array.from({ length: options.endpoints }, (_, index) => index),
        (index) => server.startServer(loadEndpoint(index, gate))
      )
      for (const handle of servers) yield* handle.start
      for (const handle of servers) yield* handle.awaitStarted
      const connected = yield* Effect.forEach(servers, (handle) => client.connect(handle.address, LoadGateway))
      const wrap = options.wrapClient
      const clients = wrap === undefined ? connected : connected.map((each, index) => wrap(each, index))
      const bulkServed = { atServer: new Map<number, number>(), atClient: new Map<number, number>() }
      yield* RpcEndpoint.scoped(bulkEndpoint(bulkServed.atServer)).pipe(Effect.provideService(RpcService.RpcService, server))
      yield* RpcEndpoint.scoped(bulkEndpoint(bulkServed.atClient)).pipe(Effect.provideService(RpcService.RpcService, client))
      const bulkDirections = [
        { client: yield* client.connect(server.address("bulk"), BulkGateway), served: bulkServed.atServer },
        { client: yield* server.connect(client.address("bulk"), BulkGateway), served: bulkServed.atClient }
      ]
      setupMs = performance.now() - setupStarted
      log(`${options.endpoints} endpoints up over ${options.transport} in ${setupMs.toFixed(0)} ms`)
      if (options.warmup) {
        yield* askPhase(clients, gate, Math.min(1000, options.asks), options.askTimeoutMillis)
        yield* tellPhase(clients, Math.min(10_000, options.tells), options.senders, options.batch)
      }
      baseline = yield* collect
      log(`baseline heap ${mib(baseline)}`)
      const askSampler = startPeakSampler()
      gate.measure = true
      gate.onFull = () => {
        allAsksInFlight = snapshot()
      }
      const asks = yield* askPhase(clients, gate, options.asks, options.askTimeoutMillis)
      peakAsks = askSampler.stop()
      asksInFlight = gate.heldHeap
      gate.measure = false
      gate.onFull = undefined
      log(`asks: ${asks.count} in ${asks.wallMs.toFixed(0)} ms`)
      const tellSampler = startPeakSampler()
      const tells = yield* tellPhase(clients, options.tells, options.senders, options.batch, tellSampler.sample)
      peakTells = tellSampler.stop()
      log(`tells: ${tells.count} in ${tells.wallMs.toFixed(0)} ms`)
      const bulk = yield* bulkPhase(bulkDirections, options.bulkAsks, options.bulkMaxBytes, options.askTimeoutMillis)
      log(`bulk: ${bulk.perDirection} asks each way in ${bulk.wallMs.toFixed(0)} ms`)
      afterLoad = yield* collect
      resourcesAfterLoad = activeResources()
      introspectionAfterLoad = snapshot()
      return { asks, tells, bulk }
    }))
    const afterClose = yield* collect
    const introspection: IntrospectionReport = {
      allAsksInFlight,
      afterLoad: introspectionAfterLoad!,
      afterClose: {
        client: summarize(yield* clientService!.introspect),
        server: summarize(yield* serverService!.introspect)
      }
    }
    const resources: ResourceReport = { start: resourcesAtStart, afterLoad: resourcesAfterLoad, afterClose: activeResources() }
    const heap: HeapReport = {
      start,
      baseline,
      peak: Math.max(peakAsks, peakTells),
      peakAsks,
      peakTells,
      asksInFlight,
      afterLoad,
      afterClose,
      boundBytes: options.heapBoundBytes
    }
    const { log: _, wrapClient: __, ...rest } = options
    return {
      options: rest,
      setupMs,
      resources,
      introspection,
      asks: phases.asks,
      tells: phases.tells,
      bulk: phases.bulk,
      heap,
      problems: [...askProblems(phases.asks), ...tellProblems(phases.tells), ...bulkProblems(phases.bulk), ...heapProblems(heap),
        ...resourceProblems(resources),
        ...introspectionProblems(introspection, options)
      ]
    }
  }).pipe(Effect.orDie)

/** The report as aligned lines of text. */
export const format = (report: LoadReport): string => {
  const { asks, bulk, heap, options, tells } = report
  const rate = (perSecond: number) => Math.round(perSecond).toLocaleString("en-US")
  const lines = [
    `transport ${options.transport}, ${options.endpoints} endpoints, ${options.asks} asks, ${options.tells} tells ` +
      `(${options.senders} senders, barrier every ${options.batch} tells per sender)` +
      (options.config === undefined || Object.keys(options.config).length === 0
        ? ""
        : `, config ${JSON.stringify(options.config)}`),
    `setup        ${report.setupMs.toFixed(0)} ms`,
    `asks         ${asks.wallMs.toFixed(0)} ms (all arrived after ${asks.arrivalMs.toFixed(0)} ms), ` +
      `${rate(asks.perSecond)} asks/s; answered ${asks.answered}, failed ` +
      `${asks.failed}, mismatched ${asks.mismatched}, duplicated ${asks.duplicated}, missing ${asks.missing}; ` +
      `endpoints saw ${asks.serverReceived} (${asks.serverDuplicates} twice); gate opened by ${asks.gateOpenedBy}`,
    `tells        ${tells.wallMs.toFixed(0)} ms, ${rate(tells.perSecond)} tells/s; sent ${tells.sent}, received ` +
      `${tells.received}, duplicates ${tells.duplicates}, out of order ${tells.outOfOrder}, lost ${tells.lost}, ` +
      `late ${tells.late}; ${tells.barriers} barrier asks`,
    `bulk         ${bulk.perDirection} asks each way (64 KiB to ${mib(options.bulkMaxBytes)}, ${mib(bulk.bytes)} sent) in ` +
      `${bulk.wallMs.toFixed(0)} ms, ${mib(bulk.bytesPerSecond)}/s; answered ${bulk.answered}, failed ${bulk.failed}, ` +
      `mismatched ${bulk.mismatched}; served twice ${bulk.servedTwice}, never ${bulk.neverServed}`,
    `heap         start ${mib(heap.start)}, baseline ${mib(heap.baseline)}, peak ${mib(heap.peak)} ` +
      `(asks ${mib(heap.peakAsks)}, tells ${mib(heap.peakTells)}), with every ask in flight ${mib(heap.asksInFlight)} ` +
      `(${perAsk(heap, asks.count)}), after load ` +
      `${mib(heap.afterLoad)} (${signed(heap.afterLoad - heap.baseline)}), after close ${mib(heap.afterClose)} ` +
      `(${signed(heap.afterClose - heap.baseline)}); bound +${mib(heap.boundBytes)}`,
    `introspect   ${describeIntrospection(report.introspection)}`,
    `resources    start ${describeResources(report.resources.start)}; after load ` +
      `${describeResources(report.resources.afterLoad)}; after close ${describeResources(report.resources.afterClose)}`,
    report.problems.length === 0 ? "OK" : `PROBLEMS\n${report.problems.map((line) => `  - ${line}`).join("\n")}`
  ]
  return lines.join("\n")
}

const perAsk = (heap: HeapReport, count: number) =>
  heap.asksInFlight === 0 || count === 0
    ? "not measured"
    : `${Math.round((heap.asksInFlight - heap.baseline) / count)} bytes per ask`

const describeSummary = (summary: SnapshotSummary) =>
  `${summary.lifecycle}, ${summary.endpoints} endpoints, mailboxes ${summary.mailboxDepth}, ` +
  `${summary.connections} connections, calls out ${summary.callsOut} / in ${summary.callsIn}, ` +
  `buffered ${summary.bufferedBytes} B, in flight ${summary.inFlightCalls}, timeouts ${summary.pendingTimeouts}`

const describeIntrospection = (introspection: IntrospectionReport) => {
  const pair = (moment: string, both: { readonly client: SnapshotSummary; readonly server: SnapshotSummary }) =>
    `\n  ${moment}: client ${describeSummary(both.client)}\n  ${" ".repeat(moment.length)}  server ${describeSummary(both.server)}`
  return (introspection.allAsksInFlight === undefined ? "" : pair("every ask in flight", introspection.allAsksInFlight)) +
    pair("after the load", introspection.afterLoad) + pair("after close", introspection.afterClose)
}

const describeResources = (counts: Readonly<Record<string, number>>) => {
  const entries = Object.entries(counts)
  return entries.length === 0 ? "none" : entries.map(([type, count]) => `${count} ${type}`).join(", ")
}

const signed = (bytes: number) => `${bytes >= 0 ? "+" : "-"}${mib(Math.abs(bytes))}`

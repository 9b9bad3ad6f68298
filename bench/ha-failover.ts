/**
 * The HA figures of docs/HA.md, measured with real processes and a real etcd on this machine:
 *
 * 1. failover after SIGKILL: a private etcd, two peer processes (test/fixtures/haPeer.ts) campaigning with leader
 *    endpoints, this process following the leader with `connectLeader`; the leader is SIGKILLed `--runs` times (a
 *    fresh standby is started after each kill). For each run: the time from the kill to the standby's confirmation,
 *    and to the follower's first answer from it;
 * 2. stale messages: every 50 ms, every live peer is asked to report to a follower fenced monotonically, with the
 *    token of the last session it led (a deposed leader's late work); `--pauses` times the leader is SIGSTOPped past
 *    its TTL and resumed, so deposed leaders keep sending. Counted: reports applied, refused, and applied from a
 *    term lower than one already applied (must be 0);
 * 3. an etcd restart: etcd is stopped for 2 s and started again; when the leader stepped down, when a leader was
 *    confirmed again (and which), and whether any two leaderships overlapped.
 *
 * Run: npm run ha:failover [-- --ttl 2 --runs 10 --pauses 3]    (needs etcd on PATH)
 */
import { NodeRuntime } from "@effect/platform-node"
import { Effect, References, Stream } from "effect"
import { HaServices, LeaderToken, RpcEndpoint, RpcService } from "effect-actor-rpc"
import * as EtcdHa from "effect-actor-rpc/etcd"
import { randomUUID } from "node:crypto"
import * as Os from "node:os"
import * as Etcd from "../test/fixtures/etcd.js"
import { COMPONENT, FollowerGateway, HaControl, HaWork, type PeerEvent } from "../test/fixtures/haGateway.js"
import { type HaPeer, overlaps, spawnHaPeer, tenures } from "../test/fixtures/haPeerProcess.js"

const argument = (name: string, fallback: number) => {
  const at = process.argv.indexOf(`--${name}`)
  return at >= 0 ? Number(process.argv[at + 1]) : fallback
}
const TTL = argument("ttl", 2)
const RUNS = argument("runs", 10)
const PAUSES = argument("pauses", 3)

const say = (line: string) => Effect.sync(() => console.log(line))
const loadAverage = () => Os.loadavg().map((l) => l.toFixed(2)).join(" ")
const summary = (values: ReadonlyArray<number>) => {
  const sorted = [...values].sort((a, b) => a - b)
  const middle = sorted.length / 2
  const median = sorted.length % 2 === 1
    ? sorted[Math.floor(middle)]!
    : Math.round((sorted[middle - 1]! + sorted[middle]!) / 2)
  return sorted.length === 0 ? "n/a" : `min ${sorted[0]} / median ${median} / max ${sorted.at(-1)} ms`
}

type Confirmed = Extract<PeerEvent, { _tag: "Confirmed" }>

const program = Effect.gen(function*() {
  yield* say(
    `ha:failover — TTL ${TTL} s, ${RUNS} kills, ${PAUSES} pauses; load average ${loadAverage()} on ` +
      `${Os.cpus().length} cores`
  )
  const etcd = yield* Etcd.start
  const prefix = `${randomUUID()}/`
  const service = yield* RpcService.RpcService

  // The follower: monotonic fencing over the leaders' tokens; it counts what it applies.
  const applied: Array<{ readonly from: string; readonly term: number }> = []
  let appliedStale = 0
  const follower = yield* RpcEndpoint.scoped(RpcEndpoint.makeFenced({
    id: "follower",
    gateways: [FollowerGateway],
    monotonic: LeaderToken.Order,
    init: () =>
      Effect.succeed({
        handlers: {
          record: (entry) =>
            Effect.sync(() => {
              if (applied.some((earlier) => earlier.term > entry.term)) appliedStale++
              applied.push(entry)
            })
        }
      })
  }))
  const ha = yield* HaServices.make(
    yield* EtcdHa.makeDriver({
      endpoints: [etcd.endpoint],
      ttl: `${TTL} seconds`,
      margin: `${TTL * 250} millis`,
      prefix
    })
  )
  const client = yield* HaServices.connectLeader(COMPONENT, HaWork, { whileNoLeader: "wait" }).pipe(
    Effect.provideService(HaServices.HaServices, ha)
  )

  const all: Array<HaPeer> = []
  const killedAt = new Map<string, number>()
  let serial = 0
  const spawn = Effect.gen(function*() {
    const peer = yield* spawnHaPeer({
      name: `peer-${++serial}`,
      etcd: etcd.endpoint,
      prefix,
      follower: follower.address,
      ttlSeconds: TTL
    })
    all.push(peer)
    return peer
  })
  const live = () => all.filter((peer) => !killedAt.has(peer.name))
  const leaderNow = (after: number) =>
    Effect.raceAll(
      live().map((peer) =>
        Effect.map(
          peer.awaitEvent((e) => e._tag === "Confirmed" && e.term > after, "60 seconds"),
          (event) => ({ peer, event: event as Confirmed })
        )
      )
    )

  // Every live peer reports every 50 ms, with the token of the last session it led.
  const reports = { ok: 0, refused: 0 }
  yield* Effect.forkScoped(Effect.forever(Effect.gen(function*() {
    yield* Effect.sleep("50 millis")
    yield* Effect.forEach(live(), (peer) =>
      Effect.flatMap(
        service.connect(peer.control, HaControl),
        (control) => control.report(undefined, { timeout: "1 second" })
      ).pipe(
        Effect.tap(({ outcome }) =>
          Effect.sync(() => {
            if (outcome === "ok") reports.ok++
            else if (outcome !== "never led") reports.refused++
          })
        ),
        Effect.ignore
      ), { concurrency: "unbounded", discard: true })
  })))

  yield* Effect.all([spawn, spawn], { concurrency: "unbounded" })
  let current = yield* leaderNow(0)

  // 1. Failover after SIGKILL.
  const toConfirmed: Array<number> = []
  const toFollower: Array<number> = []
  for (let run = 1; run <= RUNS; run++) {
    // A fresh standby first, so that two peers campaign when the leader dies.
    if (live().length < 2) yield* spawn
    yield* Effect.sleep("500 millis")
    const killed = Date.now()
    killedAt.set(current.peer.name, killed)
    yield* current.peer.kill
    const next = yield* leaderNow(current.event.term)
    toConfirmed.push(next.event.at - killed)
    yield* client.connection.states.pipe(
      Stream.filter((state) => state._tag === "Registered" && state.leader.token.term === next.event.term),
      Stream.runHead
    )
    yield* client.whoami(undefined, { timeout: "10 seconds" })
    toFollower.push(Date.now() - killed)
    yield* say(
      `  kill ${run}: ${current.peer.name} (term ${current.event.term}) → ${next.peer.name} (term ` +
        `${next.event.term}) confirmed after ${next.event.at - killed} ms, the follower reached it after ` +
        `${Date.now() - killed} ms`
    )
    current = next
  }

  // 2. Deposed leaders that are still alive: SIGSTOP past the TTL, then SIGCONT.
  for (let pause = 1; pause <= PAUSES; pause++) {
    if (live().length < 2) yield* spawn
    yield* Effect.sleep("500 millis")
    const frozen = current.peer
    yield* frozen.signal("SIGSTOP")
    const next = yield* leaderNow(current.event.term)
    yield* Effect.sleep("500 millis")
    yield* frozen.signal("SIGCONT")
    yield* say(
      `  pause ${pause}: ${frozen.name} (term ${current.event.term}) frozen; ${next.peer.name} (term ` +
        `${next.event.term}) confirmed; ${frozen.name} resumed and keeps reporting with its old token`
    )
    current = next
    yield* Effect.sleep("1 second")
  }

  // 3. An etcd restart.
  const stoppedAt = Date.now()
  const before = current
  yield* etcd.stop
  const down = yield* before.peer.awaitEvent(
    (e) => e._tag === "Revoked" && e.session === before.event.session,
    "20 seconds"
  )
  yield* Effect.sleep("2 seconds")
  yield* etcd.restart
  const after = yield* leaderNow(before.event.term)
  yield* say(
    `  etcd restart: ${before.peer.name} (term ${before.event.term}) stepped down ` +
      `(${down._tag === "Revoked" ? down.reason : ""}) ${down.at - stoppedAt} ms after etcd stopped; etcd was down ` +
      `2 s; ${after.peer.name} (${after.peer === before.peer ? "the same peer" : "another peer"}) was confirmed ` +
      `for term ${after.event.term} ${after.event.at - stoppedAt} ms after etcd stopped`
  )
  yield* Effect.sleep("1 second")

  // A killed peer's leadership ended when it was killed.
  const tenuresSeen = tenures(all).map((t) =>
    killedAt.has(t.peer) && t.end === undefined ? { ...t, end: killedAt.get(t.peer)! } : t
  )
  const problems = overlaps(tenuresSeen)
  yield* say("")
  yield* say(
    `failover after SIGKILL (TTL ${TTL} s, ${RUNS} runs): standby confirmed ${summary(toConfirmed)}; ` +
      `follower answered by it ${summary(toFollower)}`
  )
  yield* say(
    `reports from leaders: ${reports.ok} applied, ${reports.refused} refused by fencing; ` +
      `applied from a stale term: ${appliedStale}`
  )
  yield* say(`leaderships: ${tenuresSeen.length}, overlapping: ${problems.length}`)
  for (const problem of problems) yield* say(`  ${problem}`)
  yield* say(`load average after: ${loadAverage()}`)
  if (appliedStale > 0 || problems.length > 0) return yield* Effect.fail(new Error("a safety property was violated"))
}).pipe(
  Effect.scoped,
  Effect.provide(RpcService.layerTcp({ host: "127.0.0.1", port: "0" })),
  Effect.provideService(References.MinimumLogLevel, "Error")
)

NodeRuntime.runMain(program)

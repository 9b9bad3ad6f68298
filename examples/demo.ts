/**
 * Demo: a small, highly available Flink-like cluster of five processes talking over TCP on 127.0.0.1, printed as one
 * log.
 *
 * This program is the launcher and the dispatcher. It starts each role as its own process (examples/demo/*.ts),
 * relays their output behind a `[role]` prefix, and learns their addresses from the `READY` line each prints.
 *
 * - High availability: when `etcd` is on PATH the launcher starts a private one and every process campaigns and
 *   follows leaders through it; otherwise the launcher serves its own embedded election to the other processes over
 *   RPC (`HaRemote`), which is NOT fault tolerant (the launcher is a single point of failure). It says which one runs.
 *   `DEMO_HA=embedded` or `DEMO_HA=etcd` chooses.
 * - The ResourceManager registers TaskExecutors, hands out their slots and heartbeats them every 200 ms.
 * - Two JobMasters, jobmaster-a and jobmaster-b, campaign for the `jobmaster` component with leader endpoints: a
 *   leadership's token becomes the endpoint's fencing token before the leadership is confirmed. jobmaster-a starts
 *   first and leads; jobmaster-b stands by.
 * - Two TaskExecutors follow the JobMaster leader with `connectLeader`: they register with it (retried with backoff)
 *   and heartbeat it. Their tasks endpoint is fenced monotonically by the leaders' tokens.
 * - The dispatcher submits job-1 through its own `connectLeader` client; the leader runs its tasks on the
 *   TaskExecutors.
 * - Failover: the launcher SIGKILLs jobmaster-a. Its lease runs out (2 s), jobmaster-b is granted and confirmed, the
 *   TaskExecutors register with it on their own, and job-2 runs there. A message carrying the old session's token is
 *   then rejected twice: by the new leader (`FencingTokenError` Mismatch) and by a TaskExecutor that has accepted the
 *   newer leader's work (`Stale`).
 * - Crash: the launcher kills te-2 with SIGKILL. The ResourceManager's next heartbeat to it fails with
 *   RecipientUnreachableError; it declares te-2 lost and releases its slots.
 * - Shutdown: te-1, jobmaster-b and the ResourceManager are stopped with SIGTERM, in that order; each runs onStop and
 *   shuts its RpcService down; then the HA engine stops. The exit code is 0 if all of this happened; a 120 s watchdog
 *   (90 s plus the longest DEMO_INSPECT hold) kills the processes and fails otherwise.
 * - `DEMO_INSPECT=<seconds>` (1 to 30) turns reflection on in every process and holds the cluster open that long
 *   before te-2 crashes, printing the addresses and commands, so that the command-line client (`npm run -s cli --`
 *   here, `npx effect-actor-rpc` where the package is installed) can list, describe and call it.
 *
 * Run: npm run demo   (or: npx tsx examples/demo.ts; DEMO_INSPECT=30 npm run demo to look at it with the CLI)
 */
import { Clock, Duration, Effect, Option, Schedule } from "effect"
import { HaRemote, HaServices, type LeaderInformation, RpcError, RpcService } from "effect-actor-rpc"
import {
  ClusterService,
  HEARTBEAT_INTERVAL,
  HEARTBEAT_PAUSE,
  JOBMASTER,
  JobMasterGateway,
  LEASE_SECONDS,
  ResourceManagerGateway,
  TaskExecutorGateway,
  TaskExecutorJobsGateway
} from "./demo/protocol.js"
// The private etcd the tests and the failover bench start too (not part of the example).
import * as Etcd from "../test/fixtures/etcd.js"
import { LaunchError, logger, runLauncher, spawnRole, withWatchdog } from "./support/processes.js"

const launcher = logger("launcher")
const log = logger("dispatcher")

/** The HA engine: a private etcd when there is one, else this process's embedded election served over RPC. */
const startHa = Effect.gen(function*() {
  const choice = process.env.DEMO_HA ?? "auto"
  const binary = choice === "embedded" ? undefined : Etcd.etcdBinary()
  if (choice === "etcd" && binary === undefined) {
    return yield* Effect.fail(
      new LaunchError({ detail: "DEMO_HA=etcd, but etcd is not on PATH (apt-get install -y etcd-server)" })
    )
  }
  if (binary !== undefined) {
    const { endpoint } = yield* Etcd.start.pipe(
      Effect.mapError((error) => new LaunchError({ detail: error.message }))
    )
    yield* launcher(
      `HA engine: etcd (${binary}), a private single-member etcd started for this run at ${endpoint}; ` +
        `leases of ${LEASE_SECONDS} s`
    )
    const EtcdHa = yield* Effect.promise(() => import("effect-actor-rpc/etcd"))
    const driver = yield* EtcdHa.makeDriver({
      endpoints: [endpoint],
      ttl: Duration.seconds(LEASE_SECONDS),
      margin: Duration.millis(500),
      prefix: "demo/"
    }).pipe(Effect.mapError((error) => new LaunchError({ detail: error.message })))
    return { spec: `etcd:${endpoint}`, ha: yield* HaServices.make(driver) }
  }
  const driver = yield* HaServices.makeEmbeddedDriver
  const server = yield* HaRemote.serve(driver, { lease: Duration.seconds(LEASE_SECONDS) }).pipe(
    Effect.mapError((error) => new LaunchError({ detail: error.message }))
  )
  yield* launcher(
    `HA engine: etcd is not on PATH${choice === "embedded" ? " (or DEMO_HA=embedded)" : ""}, so this launcher ` +
      `serves its own embedded election to the other processes over RPC at ${server.address} (leases of ` +
      `${LEASE_SECONDS} s).\n` +
      `  It is NOT fault tolerant: if the launcher dies, nobody can be elected. Install etcd ` +
      `(apt-get install -y etcd-server) to run the cluster on it.`
  )
  return { spec: `remote:${server.address}`, ha: yield* HaServices.make(driver) }
})

/**
 * How long to hold the cluster open for the command-line client: `DEMO_INSPECT`, whole seconds from 1 to 30 (the
 * processes' heartbeat loops are bounded at 50 s).
 */
const inspectFor = Effect.suspend(() => {
  const value = process.env.DEMO_INSPECT
  if (value === undefined) return Effect.succeed(Option.none<number>())
  const seconds = Number(value)
  return Number.isInteger(seconds) && seconds >= 1 && seconds <= 30
    ? Effect.succeed(Option.some(seconds))
    : Effect.fail(new LaunchError({ detail: `DEMO_INSPECT must be whole seconds from 1 to 30, not "${value}"` }))
})

/** Polls (every 100 ms, at most `within`) until `check` holds. */
const until = <A, E>(what: string, poll: Effect.Effect<A, E>, check: (a: A) => boolean, within: Duration.Input) =>
  poll.pipe(
    Effect.repeat({ until: check, schedule: Schedule.spaced("100 millis") }),
    Effect.timeoutOrElse({
      duration: within,
      orElse: () =>
        Effect.fail(
          new LaunchError({ detail: `${what} did not happen within ${Duration.format(Duration.fromInputUnsafe(within))}` })
        )
    })
  )

const program = Effect.gen(function*() {
  const service = yield* RpcService.RpcService
  const inspect = yield* inspectFor
  const { ha, spec } = yield* startHa
  const leaders = yield* ha.retrieve(JOBMASTER)
  const leaderNow = leaders.get
  const leaderOfTermAbove = (term: number) =>
    until(
      `a JobMaster leader with a term above ${term}`,
      leaderNow,
      (leader) => Option.isSome(leader) && leader.value.token.term > term,
      "20 seconds"
    ).pipe(Effect.map((leader) => Option.getOrThrow(leader) as LeaderInformation.LeaderInformation))

  yield* launcher("starting the ResourceManager")
  const rmRole = yield* spawnRole("resourcemanager", "examples/demo/resourcemanager.ts")
  const [rmAddress] = yield* rmRole.ready

  yield* launcher("starting jobmaster-a; it campaigns for the jobmaster leadership")
  const jmA = yield* spawnRole("jobmaster-a", "examples/demo/jobmaster.ts", ["jobmaster-a", rmAddress!, spec])
  const [addressA] = yield* jmA.ready
  const first = yield* leaderOfTermAbove(0)
  if (first.address !== addressA) {
    return yield* Effect.fail(new LaunchError({ detail: `expected jobmaster-a to lead, but ${first} does` }))
  }
  yield* launcher(`jobmaster-a leads: ${first}`)
  yield* launcher("starting jobmaster-b (it stands by) and two TaskExecutors")
  const [jmB, te1Role, te2Role] = yield* Effect.all([
    spawnRole("jobmaster-b", "examples/demo/jobmaster.ts", ["jobmaster-b", rmAddress!, spec]),
    spawnRole("te-1", "examples/demo/taskexecutor.ts", ["te-1", rmAddress!, spec]),
    spawnRole("te-2", "examples/demo/taskexecutor.ts", ["te-2", rmAddress!, spec])
  ])
  const [[addressB], [te1Address], [te2Address]] = yield* Effect.all(
    [jmB.ready, te1Role.ready, te2Role.ready],
    { concurrency: "unbounded" }
  )
  const te1 = yield* service.connect(te1Address!, TaskExecutorGateway)
  const te2 = yield* service.connect(te2Address!, TaskExecutorGateway)
  const bothFollow = (term: number) =>
    until(
      `both TaskExecutors registering with the JobMaster leader of term ${term}`,
      Effect.all([te1.status(), te2.status()]),
      (statuses) => statuses.every((status) => status.jobMasterTerm === term),
      "15 seconds"
    )
  yield* bothFollow(first.token.term)

  // The dispatcher follows the JobMaster leader too; while there is none, its calls wait within their timeout.
  const jobMaster = yield* HaServices.connectLeader(JOBMASTER, JobMasterGateway, { whileNoLeader: "wait" }).pipe(
    Effect.provideService(HaServices.HaServices, ha)
  )
  const resourceManager = yield* service.connect(rmAddress!, ResourceManagerGateway)
  const registered = yield* resourceManager.registeredTaskExecutors()
  yield* log(`TaskExecutors registered: ${registered.join(", ")}; submitting job-1`)
  yield* log(yield* jobMaster.submitJob({ jobId: "job-1", tasks: 2 }))
  yield* Effect.sleep("300 millis")

  yield* log(`--- failover: the launcher kills the leader jobmaster-a (SIGKILL, pid ${jmA.pid}) ---`)
  const killedAt = yield* Clock.currentTimeMillis
  yield* jmA.kill
  const second = yield* leaderOfTermAbove(first.token.term)
  if (second.address !== addressB) {
    return yield* Effect.fail(new LaunchError({ detail: `expected jobmaster-b to take over, but ${second} leads` }))
  }
  yield* log(
    `jobmaster-b took over ${(yield* Clock.currentTimeMillis) - killedAt} ms after the kill ` +
      `(a ${LEASE_SECONDS} s lease): ${second}`
  )
  yield* bothFollow(second.token.term)
  yield* log("both TaskExecutors follow the new leader: connectLeader registered them with it on its own")
  yield* log(yield* jobMaster.submitJob({ jobId: "job-2", tasks: 2 }, { timeout: "10 seconds" }))

  yield* log(`a message from the old session (term ${first.token.term}) to the new leader:`)
  const oldSession = yield* service.connectFenced(second.address, first.token, JobMasterGateway)
  const refused = yield* Effect.flip(oldSession.submitJob({ jobId: "job-stale", tasks: 1 }))
  if (!(refused instanceof RpcError.FencingTokenError)) {
    return yield* Effect.fail(new LaunchError({ detail: `the old session was not fenced off: ${refused.message}` }))
  }
  yield* log(`  rejected (${refused.reason}): ${refused.message}`)
  yield* log(`a task from the old session to te-1, which has run the new leader's tasks:`)
  const { jobsAddress } = yield* te1.status()
  const lateTask = yield* service.connectFenced(jobsAddress, first.token, TaskExecutorJobsGateway)
  const stale = yield* Effect.flip(lateTask.submitTask({ taskId: "job-1/late-task", jobMaster: "jobmaster-a" }))
  if (!(stale instanceof RpcError.FencingTokenError) || stale.reason !== "Stale") {
    return yield* Effect.fail(new LaunchError({ detail: `the old session's task was not refused as Stale: ${stale}` }))
  }
  yield* log(`  rejected (${stale.reason}): ${stale.message}`)

  if (Option.isSome(inspect)) {
    // In this repository the CLI runs from the sources; where the package is installed it is `npx effect-actor-rpc`.
    const cli = "npm run -s cli --"
    yield* launcher(
      `DEMO_INSPECT: the cluster stays up for ${inspect.value} s with reflection on. In another shell:\n` +
        `  ${cli} ping ${rmAddress!.replace(/\/[^/]*$/, "")}\n` +
        `  ${cli} list ${second.address.replace(/\/[^/]*$/, "")}\n` +
        `  ${cli} describe ${second.address}\n` +
        `  ${cli} call ${rmAddress} registeredTaskExecutors\n` +
        `  ${cli} call ${te1Address} status\n` +
        `  ${cli} call ${second.address} heartbeatFromTaskExecutor '"cli"' --token '${
          JSON.stringify(second.token)
        }'\n` +
        `  ${cli} call ${second.address} heartbeatFromTaskExecutor '"cli"' --token '${
          JSON.stringify(first.token)
        }'   # the old session's token: refused (exit 5)`
    )
    yield* Effect.sleep(Duration.seconds(inspect.value))
  }

  yield* log(`--- te-2 crashes: the launcher kills its process (SIGKILL, pid ${te2Role.pid}) ---`)
  const crashedAt = yield* Clock.currentTimeMillis
  yield* te2Role.kill
  // The ResourceManager must notice within a heartbeat interval plus the heartbeat pause; poll, bounded.
  const remaining = yield* until(
    "the ResourceManager noticing that te-2 died",
    resourceManager.registeredTaskExecutors(),
    (ids) => !ids.includes("te-2"),
    "3 seconds"
  )
  yield* log(
    `the ResourceManager dropped te-2 ${(yield* Clock.currentTimeMillis) - crashedAt} ms after the kill (heartbeats ` +
      `every ${Duration.format(HEARTBEAT_INTERVAL)}, pause ${Duration.format(HEARTBEAT_PAUSE)}); ` +
      `registered now: ${remaining.join(", ")}`
  )

  yield* log("--- shutting down the cluster ---")
  yield* te1Role.stop
  yield* jmB.stop
  yield* rmRole.stop
  yield* log("cluster stopped")
}).pipe(Effect.scoped)

// The watchdog allows for the longest DEMO_INSPECT hold on top of the run.
program.pipe(Effect.provide(ClusterService), withWatchdog("120 seconds"), runLauncher)

/**
 * Demo: a small Flink-like cluster of four processes talking over TCP on 127.0.0.1, printed as one log.
 *
 * This program is the launcher and the dispatcher. It starts each role as its own process (examples/demo/*.ts),
 * relays their output behind a `[role]` prefix, and learns their addresses from the `READY` line each prints.
 *
 * - The ResourceManager registers TaskExecutors, hands out their slots and heartbeats them every 200 ms.
 * - Two TaskExecutors register with the ResourceManager when they start (onStart) and heartbeat the JobMaster
 *   leader they follow every 200 ms with `main.scheduleRunAsync`.
 * - The JobMaster is a fenced endpoint: every message must carry its current leader token ("leader-1").
 * - The dispatcher submits a job: the JobMaster requests slots from the ResourceManager and offers the tasks to
 *   the TaskExecutors, which connect back to the JobMaster with its leader token.
 * - Leader change: the JobMaster's token becomes "leader-2". Calls carrying "leader-1" (the dispatcher's old
 *   session, the TaskExecutors' heartbeats) fail with FencingTokenError; the TaskExecutors are told about the new
 *   leader, reconnect with the new token, and a second job runs.
 * - Crash: the launcher kills te-2 with SIGKILL. The ResourceManager's next heartbeat to it fails with
 *   RecipientUnreachableError (a hung peer would time out after the 1 s heartbeat pause instead); it declares
 *   te-2 lost and releases its slots.
 * - Shutdown: te-1, the JobMaster and the ResourceManager are stopped with SIGTERM, in that order; each runs onStop
 *   (te-1 says goodbye to the ResourceManager) and shuts its RpcService down. The exit code is 0 if all of this
 *   happened; a 30 s watchdog kills the processes and fails otherwise.
 *
 * Run: npm run demo   (or: npx tsx examples/demo.ts)
 */
import { Clock, Duration, Effect, Schedule } from "effect"
import { RpcService } from "effect-actor-rpc"
import {
  ClusterService,
  HEARTBEAT_INTERVAL,
  HEARTBEAT_PAUSE,
  JobMasterGateway,
  ResourceManagerGateway,
  TaskExecutorGateway
} from "./demo/protocol.js"
import { LaunchError, logger, runLauncher, spawnRole, withWatchdog } from "./support/processes.js"

const launcher = logger("launcher")
const log = logger("dispatcher")

const program = Effect.gen(function*() {
  yield* launcher("starting the ResourceManager")
  const rmRole = yield* spawnRole("resourcemanager", "examples/demo/resourcemanager.ts")
  const [rmAddress] = yield* rmRole.ready
  yield* launcher("starting the JobMaster and two TaskExecutors")
  const [jmRole, te1Role, te2Role] = yield* Effect.all([
    spawnRole("jobmaster", "examples/demo/jobmaster.ts", [rmAddress]),
    spawnRole("te-1", "examples/demo/taskexecutor.ts", ["te-1", rmAddress]),
    spawnRole("te-2", "examples/demo/taskexecutor.ts", ["te-2", rmAddress])
  ])
  const [[jobMasterAddress], [te1Address], [te2Address]] = yield* Effect.all(
    [jmRole.ready, te1Role.ready, te2Role.ready],
    { concurrency: "unbounded" }
  )

  const service = yield* RpcService.RpcService
  // A TaskExecutor prints READY once its onStart has run, so both have registered by now.
  const resourceManager = yield* service.connect(rmAddress, ResourceManagerGateway)
  const registered = yield* resourceManager.registeredTaskExecutors()
  yield* log(`TaskExecutors registered: ${registered.join(", ")}; submitting job-1`)

  const session1 = yield* service.connectFenced(jobMasterAddress, "leader-1", JobMasterGateway)
  yield* log(yield* session1.submitJob({ jobId: "job-1", tasks: 2 }))
  yield* Effect.sleep("300 millis")

  yield* log("--- leader change: the JobMaster's leadership moves to leader-2 ---")
  yield* session1.grantLeadership("leader-2")
  yield* session1.submitJob({ jobId: "job-2", tasks: 2 }).pipe(
    Effect.catchTag("FencingTokenError", (error) => log(`the leader-1 session is rejected:\n  ${error.message}`))
  )
  // Meanwhile the TaskExecutors' heartbeats still carry leader-1.
  yield* Effect.sleep("300 millis")

  yield* log("announcing leader-2 to the TaskExecutors")
  yield* Effect.forEach([te1Address, te2Address], (address) =>
    Effect.flatMap(
      service.connect(address, TaskExecutorGateway),
      (te) => te.jobMasterLeaderChanged({ address: jobMasterAddress, leader: "leader-2" })
    ))
  const session2 = yield* service.connectFenced(jobMasterAddress, "leader-2", JobMasterGateway)
  yield* log(yield* session2.submitJob({ jobId: "job-2", tasks: 2 }))
  yield* Effect.sleep("400 millis")

  yield* log(`--- te-2 crashes: the launcher kills its process (SIGKILL, pid ${te2Role.pid}) ---`)
  const killedAt = yield* Clock.currentTimeMillis
  yield* te2Role.kill
  // The ResourceManager must notice within a heartbeat interval plus the heartbeat pause; poll, bounded.
  const remaining = yield* resourceManager.registeredTaskExecutors().pipe(
    Effect.repeat({ until: (ids) => !ids.includes("te-2"), schedule: Schedule.spaced("50 millis") }),
    Effect.timeoutOrElse({
      duration: "3 seconds",
      orElse: () => Effect.fail(new LaunchError({ detail: "the ResourceManager did not notice that te-2 died" }))
    })
  )
  const noticedAfter = (yield* Clock.currentTimeMillis) - killedAt
  yield* log(
    `the ResourceManager dropped te-2 ${noticedAfter} ms after the kill (heartbeats every ` +
      `${Duration.format(HEARTBEAT_INTERVAL)}, pause ${Duration.format(HEARTBEAT_PAUSE)}); ` +
      `registered now: ${remaining.join(", ")}`
  )

  yield* log("--- shutting down the cluster ---")
  yield* te1Role.stop
  yield* jmRole.stop
  yield* rmRole.stop
  yield* log("cluster stopped")
}).pipe(Effect.scoped)

program.pipe(Effect.provide(ClusterService), withWatchdog("30 seconds"), runLauncher)

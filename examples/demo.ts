/**
 * Demo: a small Flink-like cluster in one process, printed as a log.
 *
 * - A ResourceManager registers TaskExecutors, tracks their heartbeats and hands out slots.
 * - A JobMaster is a fenced endpoint: every message must carry its current leader token ("leader-1").
 * - Two TaskExecutors register with the ResourceManager when they start (onStart) and heartbeat every 100 ms
 *   with `main.scheduleRunAsync`, re-scheduling themselves a bounded number of times.
 * - The dispatcher (this program) submits a job: the JobMaster requests slots from the ResourceManager and
 *   offers the tasks to the TaskExecutors, which connect back to the JobMaster with its leader token.
 * - Leader change: the JobMaster's token becomes "leader-2". Calls carrying "leader-1" (the dispatcher's old
 *   session, the TaskExecutors' heartbeats) are rejected with FencingTokenError; the TaskExecutors are told
 *   about the new leader, reconnect with the new token, and a second job runs.
 * - The program ends: closing the Layers stops every endpoint (onStop), then the RpcService; the process exits 0.
 *
 * Run: npm run demo   (or: npx tsx examples/demo.ts)
 */
import { NodeRuntime } from "@effect/platform-node"
import { Clock, Console, Effect, Layer, Option, Schema } from "effect"
import { RpcAddress, RpcEndpoint, RpcError, RpcGateway, RpcService } from "effect-actor-rpc"

const SERVICE = "cluster"
const HEARTBEAT_INTERVAL = "100 millis"
const HEARTBEATS = 10

// ---------------------------------------------------------------------------------------------------------------
// Logging: "<ms since start> [component] message"
// ---------------------------------------------------------------------------------------------------------------

const startedAt = Date.now()
const logger = (component: string) => (message: string) =>
  Effect.flatMap(Clock.currentTimeMillis, (now) =>
    Console.log(`${String(now - startedAt).padStart(5)} ms  ${`[${component}]`.padEnd(17)} ${message}`))
/** Starts a continuation line, aligned with the messages above. */
const indent = `\n${" ".repeat(28)}`

// ---------------------------------------------------------------------------------------------------------------
// Gateways
// ---------------------------------------------------------------------------------------------------------------

class NoResourceAvailable extends Schema.TaggedError<NoResourceAvailable>()("NoResourceAvailable", {
  jobId: Schema.String
}) {
  override get message(): string {
    return `no free slot for ${this.jobId}`
  }
}

const ResourceManagerGateway = RpcGateway.make("ResourceManagerGateway", {
  registerTaskExecutor: RpcGateway.ask({
    payload: Schema.Struct({ id: Schema.String, address: Schema.String, slots: Schema.Number })
  }),
  heartbeatFromTaskExecutor: RpcGateway.tell({ payload: Schema.String }),
  registeredTaskExecutors: RpcGateway.ask({ success: Schema.Array(Schema.String) }),
  requestSlot: RpcGateway.ask({
    payload: Schema.Struct({ jobId: Schema.String }),
    success: Schema.Struct({ taskExecutorId: Schema.String, address: Schema.String }),
    failure: NoResourceAvailable
  })
})

const JobMasterGateway = RpcGateway.make("JobMasterGateway", {
  submitJob: RpcGateway.ask({
    payload: Schema.Struct({ jobId: Schema.String, tasks: Schema.Number }),
    success: Schema.String,
    failure: Schema.Union([NoResourceAvailable, RpcError.RpcConnectionError])
  }),
  registerTaskExecutor: RpcGateway.ask({ payload: Schema.String }),
  heartbeatFromTaskExecutor: RpcGateway.ask({ payload: Schema.String, timeout: "200 millis" }),
  // Stands in for the HA service granting leadership to a new leader session.
  grantLeadership: RpcGateway.ask({ payload: Schema.String })
})

const TaskExecutorGateway = RpcGateway.make("TaskExecutorGateway", {
  submitTask: RpcGateway.ask({
    payload: Schema.Struct({ taskId: Schema.String, jobMaster: Schema.String, leader: Schema.String }),
    success: Schema.String
  }),
  jobMasterLeaderChanged: RpcGateway.tell({ payload: Schema.Struct({ address: Schema.String, leader: Schema.String }) })
})

// ---------------------------------------------------------------------------------------------------------------
// ResourceManager
// ---------------------------------------------------------------------------------------------------------------

const ResourceManager = RpcEndpoint.make({
  id: "resourcemanager",
  gateways: [ResourceManagerGateway],
  init: () =>
    Effect.sync(() => {
      const log = logger("resourcemanager")
      const executors = new Map<string, { address: string; freeSlots: number; heartbeats: number }>()
      return {
        handlers: {
          registerTaskExecutor: ({ address, id, slots }) =>
            Effect.sync(() => executors.set(id, { address, freeSlots: slots, heartbeats: 0 })).pipe(
              Effect.andThen(log(`registered ${id} (${slots} slots) at ${address}`))
            ),
          heartbeatFromTaskExecutor: (id) =>
            Effect.sync(() => {
              const executor = executors.get(id)
              if (executor !== undefined) executor.heartbeats++
            }),
          registeredTaskExecutors: () => Effect.sync(() => [...executors.keys()]),
          requestSlot: ({ jobId }) =>
            Effect.gen(function*() {
              // The executor with the most free slots.
              const best = [...executors].filter(([, e]) => e.freeSlots > 0).sort(([, a], [, b]) =>
                b.freeSlots - a.freeSlots
              )[0]
              if (best === undefined) return yield* new NoResourceAvailable({ jobId })
              const [id, executor] = best
              executor.freeSlots--
              yield* log(`allocated a slot on ${id} to ${jobId} (${executor.freeSlots} left there)`)
              return { taskExecutorId: id, address: executor.address }
            })
        },
        onStop: Effect.suspend(() =>
          log(`stopping; heartbeats received: ${[...executors].map(([id, e]) => `${id}=${e.heartbeats}`).join(", ")}`)
        )
      }
    })
})

// ---------------------------------------------------------------------------------------------------------------
// JobMaster (fenced)
// ---------------------------------------------------------------------------------------------------------------

const JobMaster = RpcEndpoint.makeFenced({
  id: "jobmaster",
  gateways: [JobMasterGateway],
  token: Schema.String,
  initialToken: "leader-1",
  init: (main) =>
    Effect.gen(function*() {
      const service = yield* RpcService.RpcService
      const log = logger("jobmaster")
      const leader = Effect.map(main.fencingToken, Option.getOrElse(() => "<no leader>"))
      let resourceManager: RpcGateway.Client<typeof ResourceManagerGateway> | undefined
      const heartbeats = new Map<string, number>()
      return {
        handlers: {
          submitJob: ({ jobId, tasks }) =>
            Effect.gen(function*() {
              const token = yield* leader
              const rm = resourceManager!
              yield* log(`${token}: ${jobId} submitted with ${tasks} tasks; requesting slots`)
              // Talking to other endpoints takes a while: do it off the main thread.
              return RpcEndpoint.later(
                Effect.forEach(Array.from({ length: tasks }, (_, i) => i + 1), (i) =>
                  Effect.gen(function*() {
                    const slot = yield* rm.requestSlot({ jobId })
                    const taskExecutor = yield* service.connect(slot.address, TaskExecutorGateway)
                    const taskId = `${jobId}/task-${i}`
                    yield* log(`${token}: offering ${taskId} to ${slot.taskExecutorId}`)
                    return yield* taskExecutor.submitTask({ taskId, jobMaster: main.address, leader: token })
                  })).pipe(Effect.map((running) => `${jobId} is running: ${running.join(", ")}`))
              )
            }),
          registerTaskExecutor: (id) =>
            Effect.flatMap(leader, (token) => log(`${token}: ${id} connected`)),
          heartbeatFromTaskExecutor: (id) => Effect.sync(() => heartbeats.set(id, (heartbeats.get(id) ?? 0) + 1)),
          grantLeadership: (token) =>
            Effect.gen(function*() {
              const previous = yield* leader
              yield* main.setFencingToken(token)
              yield* log(`leadership moved from ${previous} to ${token}`)
            })
        },
        onStart: Effect.gen(function*() {
          resourceManager = yield* service.connect(RpcAddress.local(SERVICE, "resourcemanager"), ResourceManagerGateway)
          yield* log(`started as ${yield* leader}`)
        }),
        onStop: Effect.suspend(() =>
          log(`stopping; heartbeats accepted: ${[...heartbeats].map(([id, n]) => `${id}=${n}`).join(", ")}`)
        )
      }
    })
})

// ---------------------------------------------------------------------------------------------------------------
// TaskExecutor
// ---------------------------------------------------------------------------------------------------------------

const taskExecutor = (id: string) =>
  RpcEndpoint.make({
    id,
    gateways: [TaskExecutorGateway],
    init: (main) =>
      Effect.gen(function*() {
        const service = yield* RpcService.RpcService
        const log = logger(id)
        let resourceManager: RpcGateway.Client<typeof ResourceManagerGateway> | undefined
        // The JobMaster leader we follow, and our connection to it once established.
        let leader: string | undefined
        let jobMaster: RpcGateway.Client<typeof JobMasterGateway> | undefined
        const tasks: Array<string> = []

        // Runs off the main thread (inside `later`); re-enters state with runAsync.
        const connectToJobMaster = (address: string, token: string) =>
          Effect.gen(function*() {
            const client = yield* service.connectFenced(address, token, JobMasterGateway)
            yield* client.registerTaskExecutor(id)
            yield* main.runAsync(Effect.sync(() => {
              if (leader === token) jobMaster = client
            }))
            yield* log(`connected to the JobMaster as ${token}`)
          }).pipe(Effect.catch((error) => log(`could not connect to the JobMaster: ${error.message}`)))

        // Runs on the main thread every HEARTBEAT_INTERVAL, HEARTBEATS times. The JobMaster never waits for
        // a TaskExecutor on its main thread, so a short ask from here cannot deadlock.
        const heartbeat = (beat: number): Effect.Effect<void, unknown> =>
          Effect.gen(function*() {
            yield* resourceManager!.heartbeatFromTaskExecutor(id)
            if (jobMaster !== undefined) {
              yield* jobMaster.heartbeatFromTaskExecutor(id).pipe(
                Effect.catchTag("FencingTokenError", (error) =>
                  Effect.andThen(
                    Effect.sync(() => jobMaster = undefined),
                    log(`heartbeat rejected, disconnecting from the JobMaster:${indent}${error.message}`)
                  ))
              )
            }
            if (beat < HEARTBEATS) yield* main.scheduleRunAsync(heartbeat(beat + 1), HEARTBEAT_INTERVAL)
            else yield* log(`sent the last of ${HEARTBEATS} heartbeats`)
          })

        // Follows a new leader: forget the old connection (on the main thread); connect later, off it.
        const follow = (token: string) => {
          leader = token
          jobMaster = undefined
        }

        return {
          handlers: {
            submitTask: ({ jobMaster: address, leader: token, taskId }) =>
              Effect.gen(function*() {
                tasks.push(taskId)
                yield* log(`running ${taskId} for ${token}`)
                const reply = `${taskId}@${id}`
                if (leader === token) return reply
                follow(token)
                return RpcEndpoint.later(Effect.as(connectToJobMaster(address, token), reply))
              }),
            jobMasterLeaderChanged: ({ address, leader: token }) =>
              Effect.gen(function*() {
                yield* log(`told that the JobMaster's leader is now ${token}`)
                if (leader === token) return
                follow(token)
                return RpcEndpoint.later(connectToJobMaster(address, token))
              })
          },
          onStart: Effect.gen(function*() {
            resourceManager = yield* service.connect(RpcAddress.local(SERVICE, "resourcemanager"), ResourceManagerGateway)
            yield* resourceManager.registerTaskExecutor({ id, address: main.address, slots: 2 })
            yield* log("registered with the ResourceManager; heartbeating")
            yield* main.scheduleRunAsync(heartbeat(1), HEARTBEAT_INTERVAL)
          }),
          onStop: Effect.suspend(() => log(`stopping; ran ${tasks.length} tasks: ${tasks.join(", ")}`))
        }
      })
  })

// ---------------------------------------------------------------------------------------------------------------
// The dispatcher: this program
// ---------------------------------------------------------------------------------------------------------------

const program = Effect.gen(function*() {
  const service = yield* RpcService.RpcService
  const log = logger("dispatcher")
  const jobMasterAddress = RpcAddress.local(SERVICE, "jobmaster")

  // An endpoint Layer is built once its onStart has run, so both TaskExecutors have registered by now.
  const resourceManager = yield* service.connect(RpcAddress.local(SERVICE, "resourcemanager"), ResourceManagerGateway)
  const registered = yield* resourceManager.registeredTaskExecutors()
  yield* log(`TaskExecutors registered: ${registered.join(", ")}; submitting job-1`)

  const session1 = yield* service.connectFenced(jobMasterAddress, "leader-1", JobMasterGateway)
  yield* log(yield* session1.submitJob({ jobId: "job-1", tasks: 2 }))
  yield* Effect.sleep("300 millis")

  yield* log("--- leader change: the JobMaster's leadership moves to leader-2 ---")
  yield* session1.grantLeadership("leader-2")
  yield* session1.submitJob({ jobId: "job-2", tasks: 2 }).pipe(
    Effect.catchTag("FencingTokenError", (error) =>
      log(`the leader-1 session is rejected:${indent}${error.message}`))
  )
  // Meanwhile the TaskExecutors' heartbeats still carry leader-1.
  yield* Effect.sleep("250 millis")

  yield* log("announcing leader-2 to the TaskExecutors")
  yield* Effect.forEach(["te-1", "te-2"], (id) =>
    Effect.flatMap(
      service.connect(RpcAddress.local(SERVICE, id), TaskExecutorGateway),
      (te) => te.jobMasterLeaderChanged({ address: jobMasterAddress, leader: "leader-2" })
    ))
  const session2 = yield* service.connectFenced(jobMasterAddress, "leader-2", JobMasterGateway)
  yield* log(yield* session2.submitJob({ jobId: "job-2", tasks: 2 }))
  yield* Effect.sleep("600 millis")

  yield* log("--- shutting down the cluster ---")
})

// The TaskExecutors and the JobMaster start once the ResourceManager runs; closing the Layer stops them first,
// then the ResourceManager, then the RpcService.
const ClusterLayer = Layer.mergeAll(
  RpcEndpoint.layer(JobMaster),
  RpcEndpoint.layer(taskExecutor("te-1")),
  RpcEndpoint.layer(taskExecutor("te-2"))
).pipe(
  Layer.provideMerge(RpcEndpoint.layer(ResourceManager)),
  Layer.provideMerge(RpcService.layerLocal({ name: SERVICE }))
)

program.pipe(
  Effect.provide(ClusterLayer),
  Effect.andThen(logger("dispatcher")("cluster stopped")),
  NodeRuntime.runMain
)

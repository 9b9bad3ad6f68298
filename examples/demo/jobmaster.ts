/**
 * A JobMaster process of the demo cluster. Two run side by side: each campaigns for the `jobmaster` component with a
 * leader endpoint (`HaServices.leaderEndpoint`), so one leads and the other stands by. The endpoint is fenced by the
 * leadership's token: it is set (valid until the lease deadline) before the leadership is confirmed, and cleared the
 * moment it ends. A submitted job gets its slots from the ResourceManager and its tasks go to the TaskExecutors with
 * the leader's token. Prints `READY <address>`.
 *
 * Started by examples/demo.ts (npm run demo); alone:
 *   npx tsx examples/demo/jobmaster.ts <name> <resourcemanager address> <etcd:host:port | remote:address>
 */
import { Console, Effect, Layer, Option } from "effect"
import { HaServices, RpcEndpoint, type RpcGateway, RpcService } from "effect-actor-rpc"
import { announce, runRole } from "../support/processes.js"
import {
  ClusterService,
  haLayer,
  JOBMASTER,
  JobMasterGateway,
  ResourceManagerGateway,
  TaskExecutorJobsGateway
} from "./protocol.js"

const [name, resourceManagerAddress, ha] = process.argv.slice(2)
if (name === undefined || resourceManagerAddress === undefined || ha === undefined) {
  console.error("usage: jobmaster.ts <name> <resourcemanager address> <etcd:host:port | remote:address>")
  process.exit(2)
}

const JobMaster = RpcEndpoint.makeFenced({
  id: "jobmaster",
  gateways: [JobMasterGateway],
  init: (main) =>
    Effect.gen(function*() {
      const service = yield* RpcService.RpcService
      let resourceManager: RpcGateway.Client<typeof ResourceManagerGateway> | undefined
      const heartbeats = new Map<string, number>()
      // Handlers only run under a token (the endpoint is fenced), so there always is one here.
      const token = Effect.map(main.fencingToken, Option.getOrThrow)
      return {
        handlers: {
          submitJob: ({ jobId, tasks }) =>
            Effect.gen(function*() {
              const leader = yield* token
              const rm = resourceManager!
              yield* Console.log(`term ${leader.term}: ${jobId} submitted with ${tasks} tasks; requesting slots`)
              // Talking to other processes takes a while: do it off the main thread.
              return RpcEndpoint.later(
                Effect.forEach(Array.from({ length: tasks }, (_, i) => i + 1), (i) =>
                  Effect.gen(function*() {
                    const slot = yield* rm.requestSlot({ jobId })
                    // The TaskExecutor fences its tasks by the leader's token, monotonically.
                    const taskExecutor = yield* service.connectFenced(slot.jobsAddress, leader, TaskExecutorJobsGateway)
                    const taskId = `${jobId}/task-${i}`
                    yield* Console.log(`term ${leader.term}: offering ${taskId} to ${slot.taskExecutorId}`)
                    return yield* taskExecutor.submitTask({ taskId, jobMaster: name }).pipe(
                      Effect.catchTag(
                        "FencingTokenError",
                        (error) => Effect.succeed(`${taskId} refused: ${error.reason}`)
                      )
                    )
                  })).pipe(Effect.map((running) => `${jobId} is running: ${running.join(", ")}`))
              )
            }),
          registerTaskExecutor: ({ id }) =>
            Effect.gen(function*() {
              const leader = yield* token
              yield* Console.log(`term ${leader.term}: ${id} registered`)
              return `${id} registered with ${name} (term ${leader.term})`
            }),
          // A block body: a Void method must reply undefined, since remote replies are encoded with its Schema.
          heartbeatFromTaskExecutor: (id) =>
            Effect.sync(() => {
              heartbeats.set(id, (heartbeats.get(id) ?? 0) + 1)
            })
        },
        onStart: Effect.gen(function*() {
          resourceManager = yield* service.connect(resourceManagerAddress, ResourceManagerGateway)
          yield* Console.log(`started ${name}; campaigning for leadership on ${ha.split(":")[0]}`)
        }),
        onStop: Effect.suspend(() => {
          const accepted = [...heartbeats].map(([id, n]) => `${id}=${n}`).join(", ")
          return Console.log(`stopping; heartbeats accepted: ${accepted || "none"}`)
        })
      }
    })
})

const program = Effect.gen(function*() {
  const leader = yield* HaServices.leaderEndpoint(JOBMASTER, JobMaster, {
    onConfirmed: (leadership) =>
      Console.log(`granted the leadership: term ${leadership.token.term}; its token is in force, confirmed`),
    onRevoked: (revocation) => Console.log(`stepped down from term ${revocation.token.term}: ${revocation.reason}`)
  })
  yield* announce(leader.server.address)
  return yield* Effect.never
}).pipe(Effect.scoped)

program.pipe(
  Effect.provide(haLayer(ha).pipe(Layer.provideMerge(ClusterService))),
  Effect.ensuring(Console.log("RpcService shut down")),
  runRole
)

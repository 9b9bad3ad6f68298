/**
 * The JobMaster process of the demo cluster: a fenced endpoint (every message must carry its current leader
 * token, "leader-1" at first). A submitted job gets its slots from the ResourceManager and its tasks are offered
 * to the TaskExecutors holding them. Prints `READY <address>`.
 *
 * Started by examples/demo.ts (npm run demo); alone: npx tsx examples/demo/jobmaster.ts <resourcemanager address>
 */
import { Console, Effect, Option, Schema } from "effect"
import { RpcEndpoint, type RpcGateway, RpcService } from "effect-actor-rpc"
import { announce, runRole } from "../support/processes.js"
import { ClusterService, JobMasterGateway, ResourceManagerGateway, TaskExecutorGateway } from "./protocol.js"

const [resourceManagerAddress] = process.argv.slice(2)
if (resourceManagerAddress === undefined) {
  console.error("usage: jobmaster.ts <resourcemanager address>")
  process.exit(2)
}

const JobMaster = RpcEndpoint.makeFenced({
  id: "jobmaster",
  gateways: [JobMasterGateway],
  token: Schema.String,
  initialToken: "leader-1",
  init: (main) =>
    Effect.gen(function*() {
      const service = yield* RpcService.RpcService
      const leader = Effect.map(main.fencingToken, Option.getOrElse(() => "<no leader>"))
      let resourceManager: RpcGateway.Client<typeof ResourceManagerGateway> | undefined
      const heartbeats = new Map<string, number>()
      return {
        handlers: {
          submitJob: ({ jobId, tasks }) =>
            Effect.gen(function*() {
              const token = yield* leader
              const rm = resourceManager!
              yield* Console.log(`${token}: ${jobId} submitted with ${tasks} tasks; requesting slots`)
              // Talking to other processes takes a while: do it off the main thread.
              return RpcEndpoint.later(
                Effect.forEach(Array.from({ length: tasks }, (_, i) => i + 1), (i) =>
                  Effect.gen(function*() {
                    const slot = yield* rm.requestSlot({ jobId })
                    const taskExecutor = yield* service.connect(slot.address, TaskExecutorGateway)
                    const taskId = `${jobId}/task-${i}`
                    yield* Console.log(`${token}: offering ${taskId} to ${slot.taskExecutorId}`)
                    return yield* taskExecutor.submitTask({ taskId, jobMaster: main.address, leader: token })
                  })).pipe(Effect.map((running) => `${jobId} is running: ${running.join(", ")}`))
              )
            }),
          registerTaskExecutor: (id) => Effect.flatMap(leader, (token) => Console.log(`${token}: ${id} connected`)),
          // A block body: a Void method must reply undefined, since remote replies are encoded with its Schema.
          heartbeatFromTaskExecutor: (id) =>
            Effect.sync(() => {
              heartbeats.set(id, (heartbeats.get(id) ?? 0) + 1)
            }),
          grantLeadership: (token) =>
            Effect.gen(function*() {
              const previous = yield* leader
              yield* main.setFencingToken(token)
              yield* Console.log(`leadership moved from ${previous} to ${token}`)
            })
        },
        onStart: Effect.gen(function*() {
          resourceManager = yield* service.connect(resourceManagerAddress, ResourceManagerGateway)
          yield* Console.log(`started as ${yield* leader}`)
        }),
        onStop: Effect.suspend(() =>
          Console.log(`stopping; heartbeats accepted: ${[...heartbeats].map(([id, n]) => `${id}=${n}`).join(", ")}`)
        )
      }
    })
})

const program = Effect.gen(function*() {
  const server = yield* RpcEndpoint.scoped(JobMaster)
  yield* announce(server.address)
  return yield* Effect.never
}).pipe(Effect.scoped)

program.pipe(Effect.provide(ClusterService), Effect.ensuring(Console.log("RpcService shut down")), runRole)

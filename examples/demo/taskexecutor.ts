/**
 * A TaskExecutor process of the demo cluster: it registers with the ResourceManager when it starts (onStart),
 * answers the ResourceManager's heartbeats, runs the tasks a JobMaster offers, and heartbeats the JobMaster
 * leader it follows every 200 ms with `main.scheduleRunAsync`, carrying that leader's fencing token. When it is
 * stopped it says goodbye to the ResourceManager. Prints `READY <address>`.
 *
 * Started by examples/demo.ts (npm run demo); alone:
 *   npx tsx examples/demo/taskexecutor.ts <id> <resourcemanager address>
 */
import { Console, Effect } from "effect"
import { RpcEndpoint, type RpcGateway, RpcService } from "effect-actor-rpc"
import { announce, runRole } from "../support/processes.js"
import {
  ClusterService,
  HEARTBEAT_INTERVAL,
  JobMasterGateway,
  MAX_HEARTBEATS,
  ResourceManagerGateway,
  TaskExecutorGateway
} from "./protocol.js"

const [id, resourceManagerAddress] = process.argv.slice(2)
if (id === undefined || resourceManagerAddress === undefined) {
  console.error("usage: taskexecutor.ts <id> <resourcemanager address>")
  process.exit(2)
}

const TaskExecutor = RpcEndpoint.make({
  id,
  gateways: [TaskExecutorGateway],
  init: (main) =>
    Effect.gen(function*() {
      const service = yield* RpcService.RpcService
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
          yield* Console.log(`connected to the JobMaster as ${token}`)
        }).pipe(Effect.catch((error) => Console.log(`could not connect to the JobMaster: ${error.message}`)))

      // Runs on the main thread every HEARTBEAT_INTERVAL. The JobMaster never waits for a TaskExecutor on its
      // main thread, so a short ask from here cannot deadlock.
      const heartbeat = (beat: number): Effect.Effect<void> =>
        Effect.gen(function*() {
          if (jobMaster !== undefined) {
            yield* jobMaster.heartbeatFromTaskExecutor(id).pipe(
              Effect.catch((error) =>
                Effect.andThen(
                  Effect.sync(() => jobMaster = undefined),
                  Console.log(
                    `heartbeat ${error._tag === "FencingTokenError" ? "rejected" : "failed"}, ` +
                      `disconnecting from the JobMaster:\n  ${error.message}`
                  )
                )
              )
            )
          }
          if (beat < MAX_HEARTBEATS) yield* main.scheduleRunAsync(heartbeat(beat + 1), HEARTBEAT_INTERVAL)
        })

      // Follows a new leader: forget the old connection (on the main thread); connect later, off it.
      const follow = (token: string) => {
        leader = token
        jobMaster = undefined
      }

      return {
        handlers: {
          heartbeatFromResourceManager: () => Effect.void,
          submitTask: ({ jobMaster: address, leader: token, taskId }) =>
            Effect.gen(function*() {
              tasks.push(taskId)
              yield* Console.log(`running ${taskId} for ${token}`)
              const reply = `${taskId}@${id}`
              if (leader === token) return reply
              follow(token)
              return RpcEndpoint.later(Effect.as(connectToJobMaster(address, token), reply))
            }),
          jobMasterLeaderChanged: ({ address, leader: token }) =>
            Effect.gen(function*() {
              yield* Console.log(`told that the JobMaster's leader is now ${token}`)
              if (leader === token) return
              follow(token)
              return RpcEndpoint.later(connectToJobMaster(address, token))
            })
        },
        onStart: Effect.gen(function*() {
          resourceManager = yield* service.connect(resourceManagerAddress, ResourceManagerGateway)
          yield* resourceManager.registerTaskExecutor({ id, address: main.address, slots: 2 })
          yield* Console.log("registered with the ResourceManager")
          yield* main.scheduleRunAsync(heartbeat(1), HEARTBEAT_INTERVAL)
        }),
        // The goodbye waits for the ResourceManager off the main thread (`later`), so the ResourceManager's
        // heartbeats are still answered meanwhile and it never mistakes this stop for a loss.
        onStop: Effect.gen(function*() {
          yield* Console.log(`stopping; ran ${tasks.length} tasks: ${tasks.join(", ")}`)
          return RpcEndpoint.later(
            resourceManager!.disconnectTaskExecutor({ id, reason: "it is shutting down" }).pipe(
              Effect.catch((error) => Console.log(`could not say goodbye to the ResourceManager: ${error.message}`))
            )
          )
        })
      }
    })
})

const program = Effect.gen(function*() {
  const server = yield* RpcEndpoint.scoped(TaskExecutor)
  yield* announce(server.address)
  return yield* Effect.never
}).pipe(Effect.scoped)

program.pipe(Effect.provide(ClusterService), Effect.ensuring(Console.log("RpcService shut down")), runRole)

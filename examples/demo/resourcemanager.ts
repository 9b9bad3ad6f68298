/**
 * The ResourceManager process of the demo cluster: it registers TaskExecutors, hands out their slots, and
 * heartbeats every registered TaskExecutor. A TaskExecutor whose heartbeat fails (it is unreachable, or does not
 * answer within the heartbeat pause) is declared lost and its slots are released. Prints `READY <address>`.
 *
 * Started by examples/demo.ts (npm run demo); alone: npx tsx examples/demo/resourcemanager.ts
 */
import { Console, Effect } from "effect"
import { RpcEndpoint, type RpcGateway, RpcService } from "effect-actor-rpc"
import { announce, runRole } from "../support/processes.js"
import {
  ClusterService,
  HEARTBEAT_INTERVAL,
  MAX_HEARTBEATS,
  NoResourceAvailable,
  ResourceManagerGateway,
  TaskExecutorGateway
} from "./protocol.js"

interface TaskExecutor {
  readonly client: RpcGateway.Client<typeof TaskExecutorGateway>
  /** Where JobMasters send it tasks. */
  readonly jobsAddress: string
  readonly slots: number
  /** The job of each allocated slot. */
  readonly allocated: Array<string>
}

const ResourceManager = RpcEndpoint.make({
  id: "resourcemanager",
  gateways: [ResourceManagerGateway],
  init: (main) =>
    Effect.gen(function*() {
      const service = yield* RpcService.RpcService
      const executors = new Map<string, TaskExecutor>()
      const answered = new Map<string, number>()

      const release = (id: string, executor: TaskExecutor, what: string) =>
        Effect.suspend(() => {
          if (executors.get(id) !== executor) return Effect.void
          executors.delete(id)
          const jobs = executor.allocated
          return Console.log(
            `${what}\n  released its ${jobs.length} allocated slot(s) (${jobs.join(", ") || "none"}); ` +
              `TaskExecutors left: ${[...executors.keys()].join(", ") || "none"}`
          )
        })

      // Runs on the main thread every HEARTBEAT_INTERVAL. The asks are short: a TaskExecutor answers at once
      // (it never waits on the ResourceManager from its main thread), a dead one fails as soon as its connection
      // is closed or refused, and a hung one times out after the heartbeat pause.
      const heartbeat = (round: number): Effect.Effect<void> =>
        Effect.gen(function*() {
          yield* Effect.forEach(
            [...executors],
            ([id, executor]) =>
              executor.client.heartbeatFromResourceManager().pipe(
                Effect.matchEffect({
                  onSuccess: () => Effect.sync(() => answered.set(id, (answered.get(id) ?? 0) + 1)),
                  onFailure: (error) =>
                    release(id, executor, `${id} is lost: its heartbeat failed with ${error._tag}:\n  ${error.message}`)
                })
              ),
            { concurrency: "unbounded", discard: true }
          )
          if (round < MAX_HEARTBEATS) yield* main.scheduleRunAsync(heartbeat(round + 1), HEARTBEAT_INTERVAL)
        })

      return {
        handlers: {
          // Connecting back waits on the network: do it off the main thread (`later`), then record the
          // TaskExecutor on it. runAsync enqueues before the reply goes out, so any call the reply causes
          // finds the TaskExecutor registered.
          registerTaskExecutor: ({ address, id, jobsAddress, slots }) =>
            Effect.succeed(RpcEndpoint.later(
              Effect.flatMap(service.connect(address, TaskExecutorGateway), (client) =>
                main.runAsync(
                  Effect.andThen(
                    Effect.sync(() => executors.set(id, { client, jobsAddress, slots, allocated: [] })),
                    Console.log(`registered ${id} (${slots} slots) at ${address}`)
                  )
                ))
            )),
          disconnectTaskExecutor: ({ id, reason }) =>
            Effect.suspend(() => {
              const executor = executors.get(id)
              return executor === undefined ? Effect.void : release(id, executor, `${id} disconnected: ${reason}`)
            }),
          registeredTaskExecutors: () => Effect.sync(() => [...executors.keys()]),
          requestSlot: ({ jobId }) =>
            Effect.gen(function*() {
              const free = (executor: TaskExecutor) => executor.slots - executor.allocated.length
              // The TaskExecutor with the most free slots.
              const best = [...executors].filter(([, e]) => free(e) > 0).sort(([, a], [, b]) => free(b) - free(a))[0]
              if (best === undefined) return yield* new NoResourceAvailable({ jobId })
              const [id, executor] = best
              executor.allocated.push(jobId)
              yield* Console.log(`allocated a slot on ${id} to ${jobId} (${free(executor)} left there)`)
              return { taskExecutorId: id, jobsAddress: executor.jobsAddress }
            })
        },
        onStart: Effect.andThen(
          Console.log("started; heartbeating registered TaskExecutors"),
          main.scheduleRunAsync(heartbeat(1), HEARTBEAT_INTERVAL)
        ),
        onStop: Effect.suspend(() =>
          Console.log(`stopping; heartbeats answered: ${[...answered].map(([id, n]) => `${id}=${n}`).join(", ")}`)
        )
      }
    })
})

const program = Effect.gen(function*() {
  const server = yield* RpcEndpoint.scoped(ResourceManager)
  yield* announce(server.address)
  return yield* Effect.never
}).pipe(Effect.scoped)

program.pipe(Effect.provide(ClusterService), Effect.ensuring(Console.log("RpcService shut down")), runRole)

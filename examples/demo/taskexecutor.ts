/**
 * A TaskExecutor process of the demo cluster. It registers with the ResourceManager when it starts (onStart) and
 * answers its heartbeats; it follows the JobMaster leader with `HaServices.connectLeader`, registering with each new
 * leader (retried with backoff) and heartbeating it every 200 ms; and it runs the tasks a JobMaster leader sends to
 * its tasks endpoint, which is fenced *monotonically* by the leader's token: once a newer leader's task has arrived,
 * anything from an older leadership is refused. When it is stopped it says goodbye to the ResourceManager. Prints
 * `READY <address>`.
 *
 * Started by examples/demo.ts (npm run demo); alone:
 *   npx tsx examples/demo/taskexecutor.ts <id> <resourcemanager address> <etcd:host:port | remote:address>
 */
import { Console, Effect, Layer, Stream } from "effect"
import { HaServices, LeaderToken, RpcEndpoint, type RpcGateway, RpcService } from "effect-actor-rpc"
import { announce, runRole } from "../support/processes.js"
import {
  ClusterService,
  haLayer,
  HEARTBEAT_INTERVAL,
  JOBMASTER,
  JobMasterGateway,
  MAX_HEARTBEATS,
  ResourceManagerGateway,
  TaskExecutorGateway,
  TaskExecutorJobsGateway
} from "./protocol.js"

const [id, resourceManagerAddress, ha] = process.argv.slice(2)
if (id === undefined || resourceManagerAddress === undefined || ha === undefined) {
  console.error("usage: taskexecutor.ts <id> <resourcemanager address> <etcd:host:port | remote:address>")
  process.exit(2)
}

const program = Effect.gen(function*() {
  const service = yield* RpcService.RpcService
  const tasks: Array<string> = []

  // Tasks from JobMaster leaders: fenced monotonically by their tokens.
  const jobs = yield* RpcEndpoint.scoped(RpcEndpoint.makeFenced({
    id: `${id}-tasks`,
    gateways: [TaskExecutorJobsGateway],
    monotonic: LeaderToken.Order,
    init: (main) =>
      Effect.succeed({
        handlers: {
          submitTask: ({ jobMaster, taskId }) =>
            Effect.gen(function*() {
              const token = yield* main.fencingToken
              tasks.push(taskId)
              const term = token._tag === "Some" ? token.value.term : 0
              yield* Console.log(`running ${taskId} for ${jobMaster} (term ${term})`)
              return `${taskId}@${id}`
            })
        }
      })
  }))

  // The JobMaster leader, followed: registration with each new leader, retried quickly for the demo.
  const jobMaster = yield* HaServices.connectLeader(JOBMASTER, JobMasterGateway, {
    register: ({ client, timeout }) => client.registerTaskExecutor({ id, jobsAddress: jobs.address }, { timeout }),
    retry: {
      initialTimeout: "200 millis",
      maxTimeout: "2 seconds",
      delayOnError: "500 millis",
      delayOnRefusal: "1 second"
    }
  })
  yield* jobMaster.connection.states.pipe(
    Stream.runForEach((state) => {
      switch (state._tag) {
        case "NoLeader":
          return Console.log("no JobMaster leader")
        case "Connecting":
          return state.attempt === 1
            ? Console.log(`following the JobMaster leader of term ${state.leader.token.term}; registering`)
            : Effect.void
        case "Registered":
          return Console.log(`registered: ${state.registration}`)
        case "Closed":
          return Effect.void
      }
    }),
    Effect.forkScoped
  )

  // Heartbeats to whichever JobMaster leads, off the main thread: while there is none they fail at once.
  yield* Effect.forkScoped(Effect.gen(function*() {
    let lastOutcome = "ok"
    for (let beat = 1; beat <= MAX_HEARTBEATS; beat++) {
      yield* Effect.sleep(HEARTBEAT_INTERVAL)
      const outcome = yield* jobMaster.heartbeatFromTaskExecutor(id).pipe(
        Effect.as("ok"),
        Effect.catch((error) => Effect.succeed(error._tag))
      )
      if (outcome !== lastOutcome) {
        yield* Console.log(
          outcome === "ok" ? "heartbeats reach the JobMaster leader again" : `heartbeat failed: ${outcome}`
        )
        lastOutcome = outcome
      }
    }
  }))

  const jobMasterTerm = Effect.map(
    jobMaster.connection.state,
    (state) => state._tag === "Registered" ? state.leader.token.term : 0
  )

  let resourceManager: RpcGateway.Client<typeof ResourceManagerGateway> | undefined
  const server = yield* RpcEndpoint.scoped(RpcEndpoint.make({
    id,
    gateways: [TaskExecutorGateway],
    init: (main) =>
      Effect.succeed({
        handlers: {
          heartbeatFromResourceManager: () => Effect.void,
          status: () =>
            Effect.map(jobMasterTerm, (term) => ({
              jobMasterTerm: term,
              jobsAddress: jobs.address,
              tasks: tasks.length
            }))
        },
        onStart: Effect.gen(function*() {
          resourceManager = yield* service.connect(resourceManagerAddress, ResourceManagerGateway)
          yield* resourceManager.registerTaskExecutor({
            id,
            address: main.address,
            jobsAddress: jobs.address,
            slots: 2
          })
          yield* Console.log("registered with the ResourceManager")
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
      })
  }))
  yield* announce(server.address)
  return yield* Effect.never
}).pipe(Effect.scoped)

program.pipe(
  Effect.provide(haLayer(ha).pipe(Layer.provideMerge(ClusterService))),
  Effect.ensuring(Console.log("RpcService shut down")),
  runRole
)


/**
 * Fencing: a JobMaster-like endpoint that only accepts messages carrying its current leader token.
 *
 * The endpoint starts as leader "leader-1". A client connected with that token is served. Then leadership
 * moves to "leader-2" (the endpoint replaces its token on its main thread with `main.setFencingToken`); from
 * then on the old client is rejected with a typed `FencingTokenError`, a client holding the new token is
 * served, and a client that connects without any token (`service.connect`) is rejected as well.
 *
 * Run: npm run example:fencing   (or: npx tsx examples/fencing.ts)
 */
import { NodeRuntime } from "@effect/platform-node"
import { Console, Effect, Layer, Option, Schema } from "effect"
import { RpcEndpoint, RpcGateway, RpcService } from "effect-actor-rpc"

const JobMasterGateway = RpcGateway.make("JobMasterGateway", {
  requestJobStatus: RpcGateway.ask({ success: Schema.String }),
  // Stands in for the HA service granting leadership to a new leader session.
  grantLeadership: RpcGateway.ask({ payload: Schema.String })
})

const JobMaster = RpcEndpoint.makeFenced({
  id: "jobmaster",
  gateways: [JobMasterGateway],
  token: Schema.String,
  initialToken: "leader-1",
  init: (main) =>
    Effect.succeed({
      handlers: {
        requestJobStatus: () =>
          main.fencingToken.pipe(
            Effect.map(Option.match({ onNone: () => "RUNNING", onSome: (token) => `RUNNING (leader ${token})` }))
          ),
        // Handlers run on the main thread, which is where setFencingToken must run.
        grantLeadership: (token) =>
          main.setFencingToken(token).pipe(Effect.andThen(Console.log(`[jobmaster] leadership granted to ${token}`)))
      },
      onStart: Console.log("[jobmaster] started as leader-1")
    })
})

const program = Effect.gen(function*() {
  const service = yield* RpcService.RpcService
  const address = `local://${service.name}/jobmaster`

  const oldLeader = yield* service.connectFenced(address, "leader-1", JobMasterGateway)
  yield* Console.log(`[client leader-1] job status: ${yield* oldLeader.requestJobStatus()}`)

  // Leader change: the endpoint now expects "leader-2".
  yield* oldLeader.grantLeadership("leader-2")

  // Calls carrying the old token are rejected with a typed FencingTokenError.
  const rejected = yield* Effect.flip(oldLeader.requestJobStatus())
  yield* Console.log(`[client leader-1] rejected with ${rejected._tag}:\n  ${rejected.message}`)

  const newLeader = yield* service.connectFenced(address, "leader-2", JobMasterGateway)
  yield* Console.log(`[client leader-2] job status: ${yield* newLeader.requestJobStatus()}`)

  // A client without a token is rejected too.
  const unfenced = yield* service.connect(address, JobMasterGateway)
  yield* unfenced.requestJobStatus().pipe(
    Effect.catchTag("FencingTokenError", (error) =>
      Console.log(`[client unfenced] rejected with ${error._tag} (${error.reason}):\n  ${error.message}`))
  )
})

const MainLayer = RpcEndpoint.layer(JobMaster).pipe(Layer.provideMerge(RpcService.layerLocal({ name: "fencing" })))

program.pipe(Effect.provide(MainLayer), NodeRuntime.runMain)

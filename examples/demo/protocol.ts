/**
 * What the processes of the demo cluster share: the gateways, the heartbeat timing, the RpcService Layer and the HA
 * engine each process reaches. Every process must build the gateways from the same Schemas (the connect handshake
 * compares fingerprints).
 */
import { Duration, Effect, Layer, References, Schema } from "effect"
import {
  HaError,
  HaRemote,
  type HaServices,
  LeaderToken,
  RpcConfig,
  RpcError,
  RpcGateway,
  RpcService
} from "effect-actor-rpc"

/** How often the ResourceManager and the TaskExecutors send their application heartbeats. */
export const HEARTBEAT_INTERVAL = Duration.millis(200)
/** How long a peer may stay silent before it counts as dead, for connections and for heartbeat asks alike. */
export const HEARTBEAT_PAUSE = Duration.seconds(1)
/** An upper bound on the heartbeat rounds of one process (250 × 200 ms = 50 s), so no loop runs forever. */
export const MAX_HEARTBEATS = 250

/** The component the JobMasters campaign for. */
export const JOBMASTER = "jobmaster"

/**
 * A TCP RpcService on 127.0.0.1, any free port, with short heartbeats so that a dead peer is noticed quickly; the
 * library's own logs from warnings up (the processes tell their story on the console).
 */
export const ClusterService = RpcService.layerTcp({ host: "127.0.0.1", port: "0" }).pipe(
  Layer.provide(RpcConfig.layer({
    heartbeatInterval: HEARTBEAT_INTERVAL,
    heartbeatPause: HEARTBEAT_PAUSE,
    // Only while the cluster is held open for the command-line client (DEMO_INSPECT): reflection tells anyone who
    // can connect every endpoint id, which is why it is off by default.
    reflection: process.env.DEMO_INSPECT !== undefined
  })),
  Layer.merge(Layer.succeed(References.MinimumLogLevel)("Warn"))
)

/**
 * The lease of a JobMaster's leadership: a killed leader is replaced about this long after its last renewal. 2 s is
 * etcd's smallest TTL at its default election timeout, so the demo runs the same on any etcd; its private etcd and
 * the served election use it.
 */
export const LEASE_SECONDS = 2

/**
 * Which HA engine the processes use, as the launcher passes it on the command line: `etcd:<host:port>` (a private
 * etcd the launcher started) or `remote:<address>` (the launcher's embedded election, served over RPC).
 */
export const haLayer = (
  spec: string
): Layer.Layer<HaServices.HaServices, HaError.LeaderElectionError, RpcService.RpcService> => {
  if (spec.startsWith("etcd:")) {
    // Loaded only when etcd is used: the etcd3 client and gRPC take a while to load.
    return Layer.unwrap(Effect.promise(() => import("effect-actor-rpc/etcd")).pipe(
      Effect.map((EtcdHa) =>
        EtcdHa.layer({
          endpoints: [spec.slice("etcd:".length)],
          ttl: Duration.seconds(LEASE_SECONDS),
          margin: Duration.millis(500),
          prefix: "demo/"
        })
      )
    ))
  }
  if (spec.startsWith("remote:")) return HaRemote.layer(spec.slice("remote:".length), { margin: Duration.millis(500) })
  return Layer.unwrap(Effect.fail(
    new HaError.LeaderElectionError({
      component: "",
      engine: spec,
      reason: "InvalidConfiguration",
      detail: "the HA engine must be etcd:<host:port> or remote:<address>"
    })
  ))
}

export class NoResourceAvailable extends Schema.TaggedError<NoResourceAvailable>()("NoResourceAvailable", {
  jobId: Schema.String
}) {
  override get message(): string {
    return `no free slot for ${this.jobId}`
  }
}

export const ResourceManagerGateway = RpcGateway.make("ResourceManagerGateway", {
  // The ResourceManager connects back to the TaskExecutor's address, which can fail.
  registerTaskExecutor: RpcGateway.ask({
    payload: Schema.Struct({
      id: Schema.String,
      address: Schema.String,
      jobsAddress: Schema.String,
      slots: Schema.Number
    }),
    failure: RpcError.RpcConnectionError
  }),
  disconnectTaskExecutor: RpcGateway.ask({ payload: Schema.Struct({ id: Schema.String, reason: Schema.String }) }),
  registeredTaskExecutors: RpcGateway.ask({ success: Schema.Array(Schema.String) }),
  requestSlot: RpcGateway.ask({
    payload: Schema.Struct({ jobId: Schema.String }),
    success: Schema.Struct({ taskExecutorId: Schema.String, jobsAddress: Schema.String }),
    failure: NoResourceAvailable
  })
})

/** The JobMaster leader's gateway: fenced by the token of its leadership session. */
export const JobMasterGateway = RpcGateway.make("JobMasterGateway", {
  submitJob: RpcGateway.ask({
    payload: Schema.Struct({ jobId: Schema.String, tasks: Schema.Number }),
    success: Schema.String,
    failure: Schema.Union([NoResourceAvailable, RpcError.RpcConnectionError])
  }),
  /** A TaskExecutor registers with each new leader (through `connectLeader`'s registration). */
  registerTaskExecutor: RpcGateway.ask({
    payload: Schema.Struct({ id: Schema.String, jobsAddress: Schema.String }),
    success: Schema.String,
    failure: HaError.RegistrationRefusedError
  }),
  heartbeatFromTaskExecutor: RpcGateway.ask({ payload: Schema.String, timeout: HEARTBEAT_PAUSE })
}, { token: LeaderToken.LeaderToken })

/** What the ResourceManager and the launcher ask a TaskExecutor. */
export const TaskExecutorGateway = RpcGateway.make("TaskExecutorGateway", {
  heartbeatFromResourceManager: RpcGateway.ask({ timeout: HEARTBEAT_PAUSE }),
  /** The term of the JobMaster leader it is registered with (0: none), and its tasks' endpoint. */
  status: RpcGateway.ask({
    success: Schema.Struct({ jobMasterTerm: Schema.Number, jobsAddress: Schema.String, tasks: Schema.Number })
  })
})

/**
 * What a JobMaster leader sends a TaskExecutor, carrying its token. The TaskExecutor fences it monotonically: once a
 * newer leader's task has arrived, anything from an older leadership is refused (`Stale`).
 */
export const TaskExecutorJobsGateway = RpcGateway.make("TaskExecutorJobsGateway", {
  submitTask: RpcGateway.ask({
    payload: Schema.Struct({ taskId: Schema.String, jobMaster: Schema.String }),
    success: Schema.String
  })
}, { token: LeaderToken.LeaderToken })

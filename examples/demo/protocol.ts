/**
 * What the processes of the demo cluster share: the gateways, the heartbeat timing and the RpcService Layer.
 * Every process must build the gateways from the same Schemas (the connect handshake compares fingerprints).
 */
import { Duration, Layer, Schema } from "effect"
import { RpcConfig, RpcError, RpcGateway, RpcService } from "effect-actor-rpc"

/** How often the ResourceManager and the TaskExecutors send their application heartbeats. */
export const HEARTBEAT_INTERVAL = Duration.millis(200)
/** How long a peer may stay silent before it counts as dead, for connections and for heartbeat asks alike. */
export const HEARTBEAT_PAUSE = Duration.seconds(1)
/** An upper bound on the heartbeat rounds of one process (100 × 200 ms = 20 s), so no loop runs forever. */
export const MAX_HEARTBEATS = 100

/** A TCP RpcService on 127.0.0.1, any free port, with short heartbeats so that a dead peer is noticed quickly. */
export const ClusterService = RpcService.layerTcp({ host: "127.0.0.1", port: "0" }).pipe(
  Layer.provide(RpcConfig.layer({ heartbeatInterval: HEARTBEAT_INTERVAL, heartbeatPause: HEARTBEAT_PAUSE }))
)

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
    payload: Schema.Struct({ id: Schema.String, address: Schema.String, slots: Schema.Number }),
    failure: RpcError.RpcConnectionError
  }),
  disconnectTaskExecutor: RpcGateway.ask({ payload: Schema.Struct({ id: Schema.String, reason: Schema.String }) }),
  registeredTaskExecutors: RpcGateway.ask({ success: Schema.Array(Schema.String) }),
  requestSlot: RpcGateway.ask({
    payload: Schema.Struct({ jobId: Schema.String }),
    success: Schema.Struct({ taskExecutorId: Schema.String, address: Schema.String }),
    failure: NoResourceAvailable
  })
})

export const JobMasterGateway = RpcGateway.make("JobMasterGateway", {
  submitJob: RpcGateway.ask({
    payload: Schema.Struct({ jobId: Schema.String, tasks: Schema.Number }),
    success: Schema.String,
    failure: Schema.Union([NoResourceAvailable, RpcError.RpcConnectionError])
  }),
  registerTaskExecutor: RpcGateway.ask({ payload: Schema.String }),
  heartbeatFromTaskExecutor: RpcGateway.ask({ payload: Schema.String, timeout: HEARTBEAT_PAUSE }),
  // Stands in for the HA service granting leadership to a new leader session.
  grantLeadership: RpcGateway.ask({ payload: Schema.String })
})

export const TaskExecutorGateway = RpcGateway.make("TaskExecutorGateway", {
  heartbeatFromResourceManager: RpcGateway.ask({ timeout: HEARTBEAT_PAUSE }),
  submitTask: RpcGateway.ask({
    payload: Schema.Struct({ taskId: Schema.String, jobMaster: Schema.String, leader: Schema.String }),
    success: Schema.String
  }),
  jobMasterLeaderChanged: RpcGateway.tell({ payload: Schema.Struct({ address: Schema.String, leader: Schema.String }) })
})

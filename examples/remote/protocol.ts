/**
 * The gateways of the remote example, shared by `server.ts` and `client.ts`. Both processes must build them from
 * the same Schemas: the connect handshake compares their fingerprints.
 */
import { Schema } from "effect"
import { RpcGateway } from "effect-actor-rpc"

export class KeyNotFound extends Schema.TaggedError<KeyNotFound>()("KeyNotFound", { key: Schema.String }) {
  override get message(): string {
    return `no value is stored under "${this.key}"`
  }
}

export const StoreGateway = RpcGateway.make("StoreGateway", {
  put: RpcGateway.ask({ payload: Schema.Struct({ key: Schema.String, value: Schema.String }) }),
  get: RpcGateway.ask({ payload: Schema.String, success: Schema.String, failure: KeyNotFound }),
  note: RpcGateway.tell({ payload: Schema.String }),
  notes: RpcGateway.ask({ success: Schema.Array(Schema.String) }),
  // Replies after `delayMillis`, to show a caller giving up first.
  slowEcho: RpcGateway.ask({
    payload: Schema.Struct({ text: Schema.String, delayMillis: Schema.Number }),
    success: Schema.String
  })
})

export const JobMasterGateway = RpcGateway.make("JobMasterGateway", {
  requestJobStatus: RpcGateway.ask({ success: Schema.String })
})

/**
 * Gateway evolution: three versions of a gateway, and what the compatibility checker says about a rolling upgrade
 * from the first to each of the others.
 *
 * Run: npm run example:compatibility
 */
import { NodeRuntime } from "@effect/platform-node"
import { Console, Effect, Schema } from "effect"
import { RpcCompatibility, RpcGateway } from "effect-actor-rpc"

class NoSlot extends Schema.TaggedError<NoSlot>()("NoSlot", { jobId: Schema.String }) {}
class Overloaded extends Schema.TaggedError<Overloaded>()("Overloaded", { retryInMillis: Schema.Number }) {}

// Version 1. Its failure is a one-member union of tagged errors, so it can grow later.
const JobMasterV1 = RpcGateway.make("JobMasterGateway", {
  requestJob: RpcGateway.ask({
    payload: Schema.Struct({ jobId: Schema.String, slots: Schema.Number }),
    success: Schema.Struct({ state: Schema.Literals(["queued", "running"]) }),
    failure: Schema.Union([NoSlot])
  }),
  cancelJob: RpcGateway.tell({ payload: Schema.String }),
  jobCount: RpcGateway.ask({ success: Schema.Number })
})

// Version 2, written carelessly: a required field, a new state old callers cannot read, a tell turned into an ask,
// a method dropped.
const JobMasterV2 = RpcGateway.make("JobMasterGateway", {
  requestJob: RpcGateway.ask({
    payload: Schema.Struct({ jobId: Schema.String, slots: Schema.Number, priority: Schema.Number }),
    success: Schema.Struct({ state: Schema.Literals(["queued", "running", "throttled"]) }),
    failure: Schema.Union([NoSlot, Overloaded])
  }),
  cancelJob: RpcGateway.ask({ payload: Schema.String })
})

// Version 2, written for a rolling upgrade: the new field is optional, the new method is additive, the timeout may
// change at will.
const JobMasterV2Safe = RpcGateway.make("JobMasterGateway", {
  requestJob: RpcGateway.ask({
    payload: Schema.Struct({ jobId: Schema.String, slots: Schema.Number, priority: Schema.optionalKey(Schema.Number) }),
    success: Schema.Struct({ state: Schema.Literals(["queued", "running"]) }),
    failure: Schema.Union([NoSlot]),
    timeout: "10 seconds"
  }),
  cancelJob: RpcGateway.tell({ payload: Schema.String }),
  jobCount: RpcGateway.ask({ success: Schema.Number }),
  drain: RpcGateway.ask({})
})

// Version 3 adds a failure. Callers and endpoints share the gateway, so the new endpoints may fail with a member
// old callers cannot read: the checker says so. Roll it out reader first: ship the Schema to every process while no
// endpoint fails with Overloaded yet, and start failing with it once the old version is gone.
const JobMasterV3 = RpcGateway.make("JobMasterGateway", {
  ...JobMasterV2Safe.methods,
  requestJob: RpcGateway.ask({
    payload: Schema.Struct({ jobId: Schema.String, slots: Schema.Number, priority: Schema.optionalKey(Schema.Number) }),
    success: Schema.Struct({ state: Schema.Literals(["queued", "running"]) }),
    failure: Schema.Union([NoSlot, Overloaded]),
    timeout: "10 seconds"
  })
})

const show = (title: string, older: RpcGateway.Any, newer: RpcGateway.Any) =>
  Effect.gen(function*() {
    const report = RpcCompatibility.check(older, newer)
    yield* Console.log(`\n=== ${title} ===\n${RpcCompatibility.format(report)}`)
    for (const policy of ["exact", "backward", "both"] as const) {
      const verdict = RpcCompatibility.evaluate(report, policy)
      yield* Console.log(`${policy}: ${verdict.accept ? "accepted" : "refused"}`)
    }
  })

const program = Effect.gen(function*() {
  yield* show("v1 → careless v2", JobMasterV1, JobMasterV2)
  yield* show("v1 → careful v2", JobMasterV1, JobMasterV2Safe)
  yield* show("careful v2 → v3, which adds a failure", JobMasterV2Safe, JobMasterV3)

  // What a CI job keeps in the repository: the snapshot of the released version, read back and checked against
  // the code of the next one.
  const released = RpcCompatibility.encodeSnapshot(RpcCompatibility.snapshot(JobMasterV1))
  const snapshot = yield* RpcCompatibility.decodeSnapshot(released, { source: "jobmaster-v1.json" })
  const verdict = RpcCompatibility.evaluate(RpcCompatibility.check(snapshot, JobMasterV2Safe), "backward")
  yield* Console.log(`\n=== CI: released snapshot (${released.length} bytes) → careful v2 ===\n${verdict.message}`)
})

NodeRuntime.runMain(program)

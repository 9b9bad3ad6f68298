/**
 * The consumer test's check of the etcd entry point: `effect-actor-rpc/etcd` loads, and building its driver loads
 * etcd3 (installed here as the optional peer dependency it is) or, when etcd3 is missing (`node etcd.mjs missing`,
 * run with etcd3 moved away), fails with a LeaderElectionError that says what to install. No etcd is contacted: the
 * client connects lazily, and the scope closes it before any call.
 */
import { Effect } from "effect"
import * as EtcdHa from "effect-actor-rpc/etcd"
import assert from "node:assert/strict"

const build = EtcdHa.makeDriver({ endpoints: ["127.0.0.1:2379"] }).pipe(
  Effect.map((driver) => driver.engine),
  Effect.scoped
)

if (process.argv[2] === "missing") {
  const error = await Effect.runPromise(Effect.flip(build))
  assert.equal(error._tag, "LeaderElectionError")
  assert.equal(error.reason, "InvalidConfiguration")
  assert.match(error.message, /npm install etcd3/)
  console.log(`without etcd3: ${error.message.split(". ")[0]}`)
} else {
  const engine = await Effect.runPromise(build)
  assert.equal(engine, "etcd 127.0.0.1:2379")
  console.log(`effect-actor-rpc/etcd loaded etcd3 and built a driver for ${engine}`)
}

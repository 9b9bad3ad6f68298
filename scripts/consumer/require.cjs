/**
 * The consumer test's CommonJS consumer without a bundler: `require()` of the package (an ES module) through
 * Node's require(esm), which every Node this package supports (>= 22.19) has. A local ask, and a subpath.
 */
"use strict"
const assert = require("node:assert/strict")
const { Effect, Schema } = require("effect")
const { RpcEndpoint, RpcGateway, RpcService } = require("effect-actor-rpc")
const RpcAddress = require("effect-actor-rpc/RpcAddress")

const EchoGateway = RpcGateway.make("EchoGateway", {
  echo: RpcGateway.ask({ payload: Schema.String, success: Schema.String })
})

const EchoEndpoint = RpcEndpoint.make({
  id: "echo",
  gateways: [EchoGateway],
  init: () => Effect.succeed({ handlers: { echo: (text) => Effect.succeed(`echo: ${text}`) } })
})

const program = Effect.gen(function*() {
  const server = yield* RpcEndpoint.scoped(EchoEndpoint)
  return yield* server.self(EchoGateway).echo("hello")
}).pipe(Effect.scoped, Effect.provide(RpcService.layerLocal({ name: "cjs" })))

Effect.runPromise(program).then((reply) => {
  assert.equal(reply, "echo: hello")
  assert.equal(RpcAddress.local("cjs", "echo"), "local://cjs/echo")
  console.log(`require(esm): ${reply}`)
}, (error) => {
  console.error(error)
  process.exitCode = 1
})

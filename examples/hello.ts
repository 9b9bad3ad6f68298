/**
 * Hello: define a gateway, implement it as an endpoint, start it with a Layer and call it.
 *
 * Run: npm run example:hello
 */
import { NodeRuntime } from "@effect/platform-node"
import { Console, Effect, Layer, Schema } from "effect"
import { RpcEndpoint, RpcGateway, RpcService } from "effect-actor-rpc"

// 1. The protocol: one ask with a String payload and a String reply.
const HelloGateway = RpcGateway.make("HelloGateway", {
  sayHello: RpcGateway.ask({ payload: Schema.String, success: Schema.String }),
  greeted: RpcGateway.ask({ success: Schema.Number })
})

// 2. The endpoint: state lives in init's closure and is only touched on the main thread.
const HelloEndpoint = RpcEndpoint.make({
  id: "hello",
  gateways: [HelloGateway],
  init: () =>
    Effect.sync(() => {
      let greeted = 0
      return {
        handlers: {
          sayHello: (name) => Effect.sync(() => `Hello, ${name}! (greeting #${++greeted})`),
          greeted: () => Effect.succeed(greeted)
        },
        onStart: Console.log("[hello] endpoint started"),
        onStop: Effect.suspend(() => Console.log(`[hello] endpoint stopping after ${greeted} greetings`))
      }
    })
})

const program = Effect.gen(function*() {
  const service = yield* RpcService.RpcService
  // 3. Call it by address, exactly as a remote caller would.
  const hello = yield* service.connect(`local://${service.name}/hello`, HelloGateway)
  yield* Console.log(`[client] connected to ${hello.address}`)
  yield* Console.log(`[client] ${yield* hello.sayHello("Ada")}`)
  yield* Console.log(`[client] ${yield* hello.sayHello("Grace")}`)
  yield* Console.log(`[client] the endpoint has greeted ${yield* hello.greeted()} people`)
})

// 4. Compose: the endpoint Layer needs an RpcService; closing the Layers stops the endpoint, then the service.
const MainLayer = RpcEndpoint.layer(HelloEndpoint).pipe(Layer.provideMerge(RpcService.layerLocal({ name: "hello-service" })))

program.pipe(Effect.provide(MainLayer), NodeRuntime.runMain)

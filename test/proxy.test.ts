/**
 * The chaos tests' TCP proxy (test/fixtures/proxy.ts) on its own, between plain node:net sockets on 127.0.0.1:
 * it relays both ways, a partition holds everything (bytes and hang-ups) with every socket left open until it
 * heals, a reset destroys the current connections, and releasing it closes its listener and every socket.
 */
import { assert, describe, it } from "@effect/vitest"
import { Data, Deferred, Effect, Option, type Scope } from "effect"
import * as Net from "node:net"
import * as Proxy from "./fixtures/proxy.js"

class Timeout extends Data.TaggedError("Timeout")<{ readonly message: string }> {}

/** Polls `check` every 10 ms until it holds; fails after `millis` (every wait is bounded). */
const eventually = (what: string, check: () => boolean, millis = 3000) =>
  Effect.gen(function*() {
    const deadline = Date.now() + millis
    while (!check()) {
      if (Date.now() > deadline) return yield* Effect.fail(new Timeout({ message: `${what} within ${millis} ms` }))
      yield* Effect.sleep("10 millis")
    }
  })

/** An end of a TCP connection as the tests see it: what it has read, and whether it has closed. */
interface End {
  readonly socket: Net.Socket
  readonly text: () => string
  readonly isClosed: () => boolean
}

const watch = (socket: Net.Socket): End => {
  let text = ""
  let closed = false
  socket.setEncoding("utf8")
  socket.on("data", (chunk: string) => {
    text += chunk
  })
  socket.on("error", () => {})
  socket.on("close", () => {
    closed = true
  })
  return { socket, text: () => text, isClosed: () => closed }
}

/** A target server that records what each accepted connection reads; destroys everything on release. */
const target = Effect.acquireRelease(
  Effect.callback<{ readonly server: Net.Server; readonly ends: Array<End> }>((resume) => {
    const ends: Array<End> = []
    const server = Net.createServer((socket) => void ends.push(watch(socket)))
    server.listen({ host: "127.0.0.1", port: 0 }, () => resume(Effect.succeed({ server, ends })))
  }),
  ({ ends, server }) =>
    Effect.callback<void>((resume) => {
      for (const end of ends) end.socket.destroy()
      server.close(() => resume(Effect.void))
    }).pipe(Effect.timeoutOption("5 seconds"))
).pipe(Effect.map(({ ends, server }) => ({ ends, port: (server.address() as Net.AddressInfo).port })))

/** A client connection to `port`, destroyed on release. */
const dial = (port: number): Effect.Effect<End, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() => watch(Net.connect({ host: "127.0.0.1", port }))),
    (end) => Effect.sync(() => end.socket.destroy())
  )

/** The client, the target server's end of the relayed connection, and the proxy. */
const relayed = Effect.gen(function*() {
  const server = yield* target
  const proxy = yield* Proxy.make({ host: "127.0.0.1", port: server.port })
  const client = yield* dial(proxy.port)
  yield* eventually("the proxy dials the target", () => server.ends.length === 1)
  return { proxy, client, server: server.ends[0]!, target: server }
})

describe.concurrent("test proxy", () => {
  it.live("relays both ways and counts connections accepted and open", () =>
    Effect.gen(function*() {
      const { client, proxy, server } = yield* relayed
      assert.strictEqual(proxy.authority, `127.0.0.1:${proxy.port}`)
      client.socket.write("hello")
      yield* eventually("the server reads the client's bytes", () => server.text() === "hello")
      server.socket.write("world")
      yield* eventually("the client reads the server's bytes", () => client.text() === "world")
      assert.deepStrictEqual(yield* proxy.stats, { accepted: 1, open: 1, heldBytes: 0, partitioned: false })

      // A hang-up goes through too, and the connection stops counting as open once both sockets are closed.
      client.socket.end()
      yield* eventually("the server sees the hang-up", server.isClosed)
      yield* eventually("the relayed connection is closed", () => Effect.runSync(proxy.stats).open === 0)
      assert.strictEqual((yield* proxy.stats).accepted, 1)
    }))

  it.live("a partition holds bytes both ways with both sockets open; heal delivers them in order", () =>
    Effect.gen(function*() {
      const { client, proxy, server } = yield* relayed
      client.socket.write("a")
      yield* eventually("the first bytes arrive", () => server.text() === "a")

      yield* proxy.partition
      client.socket.write("b")
      client.socket.write("c")
      server.socket.write("x")
      yield* eventually("the proxy holds 3 bytes", () => Effect.runSync(proxy.stats).heldBytes === 3)
      yield* Effect.sleep("200 millis")
      assert.strictEqual(server.text(), "a")
      assert.strictEqual(client.text(), "")
      assert.isFalse(client.isClosed())
      assert.isFalse(server.isClosed())
      assert.deepStrictEqual(yield* proxy.stats, { accepted: 1, open: 1, heldBytes: 3, partitioned: true })

      yield* proxy.heal
      yield* eventually("the held bytes reach the server", () => server.text() === "abc")
      yield* eventually("the held bytes reach the client", () => client.text() === "x")
      assert.strictEqual((yield* proxy.stats).heldBytes, 0)
      client.socket.write("d")
      yield* eventually("forwarding resumes", () => server.text() === "abcd")
    }))

  it.live("a one-way partition holds one direction only", () =>
    Effect.gen(function*() {
      const { client, proxy, server } = yield* relayed
      yield* proxy.partitionOneWay("toTarget")
      client.socket.write("up")
      server.socket.write("down")
      yield* eventually("the target's bytes still reach the client", () => client.text() === "down")
      yield* Effect.sleep("200 millis")
      assert.strictEqual(server.text(), "")
      assert.deepStrictEqual(yield* proxy.stats, { accepted: 1, open: 1, heldBytes: 2, partitioned: true })
      yield* proxy.heal
      yield* eventually("the held bytes reach the target", () => server.text() === "up")

      yield* proxy.partitionOneWay("toClient")
      client.socket.write("2")
      server.socket.write("held")
      yield* eventually("the client's bytes still reach the target", () => server.text() === "up2")
      yield* Effect.sleep("200 millis")
      assert.strictEqual(client.text(), "down")
      yield* proxy.heal
      yield* eventually("the held bytes reach the client", () => client.text() === "downheld")
    }))

  it.live("a partition holds back a hang-up until it heals", () =>
    Effect.gen(function*() {
      const { client, proxy, server } = yield* relayed
      yield* proxy.partition
      client.socket.write("bye")
      client.socket.destroy()
      yield* Effect.sleep("200 millis")
      assert.isFalse(server.isClosed(), "the far side must not learn of the hang-up during a partition")
      assert.strictEqual(server.text(), "")
      assert.strictEqual((yield* proxy.stats).open, 1)

      yield* proxy.heal
      yield* eventually("the server reads the held bytes, then the hang-up", server.isClosed)
      assert.strictEqual(server.text(), "bye")
      yield* eventually("the relayed connection is closed", () => Effect.runSync(proxy.stats).open === 0)
    }))

  it.live("a connection accepted during a partition carries nothing until it heals", () =>
    Effect.gen(function*() {
      const server = yield* target
      const proxy = yield* Proxy.make({ host: "127.0.0.1", port: server.port })
      yield* proxy.partition
      const client = yield* dial(proxy.port)
      client.socket.write("early")
      yield* eventually("the proxy accepts and dials", () => server.ends.length === 1)
      yield* Effect.sleep("200 millis")
      assert.strictEqual(server.ends[0]!.text(), "")
      yield* proxy.heal
      yield* eventually("the held bytes arrive", () => server.ends[0]!.text() === "early")
    }))

  it.live("reset destroys every current connection and keeps accepting new ones", () =>
    Effect.gen(function*() {
      const server = yield* target
      const proxy = yield* Proxy.make({ host: "127.0.0.1", port: server.port })
      const first = yield* dial(proxy.port)
      const second = yield* dial(proxy.port)
      yield* eventually("both are relayed", () => server.ends.length === 2)
      yield* proxy.partition
      first.socket.write("held")
      yield* eventually("bytes are held", () => Effect.runSync(proxy.stats).heldBytes === 4)

      yield* proxy.reset
      yield* eventually("both clients are cut off", () => first.isClosed() && second.isClosed())
      yield* eventually("both server ends are cut off", () => server.ends.every((end) => end.isClosed()))
      assert.strictEqual(server.ends[0]!.text(), "", "a reset drops what was held")
      yield* eventually("nothing is open", () => Effect.runSync(proxy.stats).open === 0)
      assert.deepStrictEqual(yield* proxy.stats, { accepted: 2, open: 0, heldBytes: 0, partitioned: true })

      yield* proxy.heal
      const third = yield* dial(proxy.port)
      third.socket.write("again")
      yield* eventually("a new connection is relayed", () => server.ends[2]?.text() === "again")
      assert.strictEqual((yield* proxy.stats).accepted, 3)
    }))

  it.live("a target that refuses: the client is hung up on", () =>
    Effect.gen(function*() {
      // A port that was free a moment ago: nothing listens on it any more.
      const port = yield* Effect.scoped(Effect.map(target, ({ port }) => port))
      const proxy = yield* Proxy.make({ host: "127.0.0.1", port })
      const client = yield* dial(proxy.port)
      yield* eventually("the client is hung up on", client.isClosed)
      yield* eventually("nothing is open", () => Effect.runSync(proxy.stats).open === 0)
    }))

  it.live("releasing the proxy closes its listener and every socket, partitioned or not", () =>
    Effect.gen(function*() {
      const server = yield* target
      const { client, port } = yield* Effect.scoped(Effect.gen(function*() {
        const proxy = yield* Proxy.make({ host: "127.0.0.1", port: server.port })
        const client = watch(Net.connect({ host: "127.0.0.1", port: proxy.port }))
        yield* eventually("relayed", () => server.ends.length === 1)
        yield* proxy.partition
        return { client, port: proxy.port }
      }))
      yield* eventually("the client is closed", client.isClosed)
      yield* eventually("the server end is closed", server.ends[0]!.isClosed)
      // The listener is gone: a new connection is refused.
      const refused = yield* Deferred.make<string>()
      const probe = Net.connect({ host: "127.0.0.1", port })
      probe.once("error", (error: NodeJS.ErrnoException) => Deferred.doneUnsafe(refused, Effect.succeed(error.code ?? "")))
      probe.once("connect", () => Deferred.doneUnsafe(refused, Effect.succeed("connected")))
      const code = yield* Effect.timeoutOption(Deferred.await(refused), "5 seconds").pipe(
        Effect.ensuring(Effect.sync(() => probe.destroy()))
      )
      assert.deepStrictEqual(code, Option.some("ECONNREFUSED"))
    }))
})

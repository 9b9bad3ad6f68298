/**
 * The `grpc-js` system: unary calls with `@grpc/grpc-js`, the gRPC most Node programs use, over one insecure HTTP/2
 * connection on 127.0.0.1. The service is defined in code, with no .proto file: each method's serializers are the
 * identity on Buffers, so the same bytes as every other system's payload travel as the gRPC message.
 *
 *   tsx bench/systems/grpc.ts server --workload ask-32B-seq
 *   tsx bench/systems/grpc.ts client --workload ask-32B-seq --port P --runs 3 --seconds 1 --warmup 0.5
 *
 * Everything is at grpc-js's defaults except the message size limits, set to 4 MiB both ways (the receive default;
 * the send default is unlimited) so that they are explicit for 64 KiB.
 *
 * - Asks: the unary method `/bench.Echo/Echo`, called through `Client.makeUnaryRequest`.
 * - Tells: gRPC has no one-way unary call (every unary call has a response). Its one-way messages are a
 *   client-streaming call: a burst is one `/bench.Sink/Tell` stream of 1,000 messages (the writer honours
 *   backpressure), and the stream's single response, sent once the server has read the end of the stream, is the
 *   server's running count of messages, so it is the ask that proves the burst arrived.
 * - Fan-out: 100 services, `bench.Echo0` to `bench.Echo99`, each with its own handler, registered in one server;
 *   the server routes by the method's path, as our service routes by endpoint id.
 */
import * as grpc from "@grpc/grpc-js"
import {
  clientArgs,
  measurePromise,
  measureTellsPromise,
  payload,
  ready,
  remoteWorkload,
  report,
  roundRobin,
  serverWorkload
} from "../support/driver.js"

const identity = (bytes: Buffer) => bytes

const method = (path: string, requestStream = false): grpc.MethodDefinition<Buffer, Buffer> => ({
  path,
  requestStream,
  responseStream: false,
  requestSerialize: identity,
  requestDeserialize: identity,
  responseSerialize: identity,
  responseDeserialize: identity
})

/** The echo service of a target (fan-out: `bench.Echo0` …; otherwise `bench.Echo`). */
const echoService = (name: string): grpc.ServiceDefinition => ({ Echo: method(`/${name}/Echo`) })

const SinkService: grpc.ServiceDefinition = { Tell: method("/bench.Sink/Tell", true) }

const serviceNames = (targets: number) =>
  targets > 1 ? Array.from({ length: targets }, (_, index) => `bench.Echo${index}`) : ["bench.Echo"]

const MAX_MESSAGE = 4 * 1024 * 1024
const options: grpc.ChannelOptions = {
  "grpc.max_receive_message_length": MAX_MESSAGE,
  "grpc.max_send_message_length": MAX_MESSAGE
}

const COUNT_BYTES = 6

const server = () => {
  const workload = serverWorkload()
  const grpcServer = new grpc.Server(options)
  if (workload.kind === "tell") {
    let tells = 0
    grpcServer.addService(SinkService, {
      Tell: (call: grpc.ServerReadableStream<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
        call.on("data", () => {
          tells++
        })
        call.on("end", () => {
          const count = Buffer.alloc(COUNT_BYTES)
          count.writeUIntBE(tells, 0, COUNT_BYTES)
          callback(null, count)
        })
      }
    })
  } else {
    for (const name of serviceNames(workload.targets)) {
      grpcServer.addService(echoService(name), {
        Echo: (call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
          callback(null, call.request)
        }
      })
    }
  }
  grpcServer.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (error, port) => {
    if (error !== null) {
      console.error(`grpc-js server: could not bind 127.0.0.1: ${error.message}`)
      process.exit(1)
    }
    ready(port)
  })
  const stop = () => {
    grpcServer.forceShutdown()
    process.exit(0)
  }
  process.on("SIGTERM", stop)
  process.on("SIGINT", stop)
}

const client = async () => {
  const args = clientArgs()
  const workload = remoteWorkload(args.workload)
  const body = Buffer.from(payload(workload.bytes).buffer)
  const channel = new grpc.Client(`127.0.0.1:${args.port}`, grpc.credentials.createInsecure(), options)
  await new Promise<void>((resolve, reject) =>
    channel.waitForReady(Date.now() + 10_000, (error) => error === undefined ? resolve() : reject(error))
  )
  const unary = (path: string) => () =>
    new Promise<Buffer>((resolve, reject) =>
      channel.makeUnaryRequest(path, identity, identity, body, (error, value) => {
        if (error === null && value !== undefined) resolve(value)
        else reject(error ?? new Error(`grpc-js client: ${path} returned no message`))
      })
    )
  if (workload.kind === "tell") {
    const burst = (tells: number) =>
      new Promise<number>((resolve, reject) => {
        const stream = channel.makeClientStreamRequest<Buffer, Buffer>(
          "/bench.Sink/Tell",
          identity,
          identity,
          (error, value) => {
            if (error === null && value !== undefined) resolve(value.readUIntBE(0, COUNT_BYTES))
            else reject(error ?? new Error("grpc-js client: /bench.Sink/Tell returned no message"))
          }
        )
        let sent = 0
        const write = () => {
          while (sent < tells) {
            sent++
            if (!stream.write(body)) return void stream.once("drain", write)
          }
          stream.end()
        }
        write()
      })
    report(await measureTellsPromise(burst, args))
  } else {
    const calls = serviceNames(workload.targets).map((name) => unary(`/${name}/Echo`))
    const pick = roundRobin(calls)
    const call = calls.length === 1 ? calls[0]! : () => pick()()
    // Checks once that the bytes come back unchanged.
    const echoed = await call()
    if (!echoed.equals(body)) throw new Error("grpc-js client: the echo returned other bytes")
    report(await measurePromise(call, workload.inFlight, args))
  }
  channel.close()
}

const role = process.argv[2]
if (role === "server") server()
else if (role === "client") await client()
else {
  console.error(
    "usage: tsx bench/systems/grpc.ts server --workload ID | client --workload ID --port P [--runs N --seconds S ...]"
  )
  process.exit(2)
}

/**
 * Gateway snapshots: a gateway as the wire sees it, as JSON. `describe --json` writes one, `check <old> <new>` reads
 * two, and two peers with different fingerprints exchange them.
 *
 * Each Schema is kept as its `SchemaRepresentation` JSON document (the encoded side, which is what SchemaBinary lays
 * out), plus what the representation cannot carry: the decoding steps between the wire and the value a reader gets
 * (transformations and the checks on their decoded side), by path, and whether the value crosses as raw bytes.
 */
import * as Duration from "effect/Duration"
import { hasProperty } from "effect/Predicate"
import * as Result from "effect/Result"
import * as Schema from "effect/Schema"
import * as SchemaAST from "effect/SchemaAST"
import * as SchemaRepresentation from "effect/SchemaRepresentation"
import type * as RpcGateway from "../RpcGateway.js"
import * as Layout from "./layout.js"

/** The `format` field of every snapshot. */
export const FORMAT = "effect-actor-rpc/gateway-snapshot"

/** The snapshot format version this library writes and reads. */
export const VERSION = 1

/** What a reader does with a value between the wire and its handler: a transformation and the checks after it. */
export const Decoding = Schema.Struct({
  /** The type a transformation decodes the wire value to (classes, which only construct, are not listed). */
  decodesTo: Schema.optionalKey(Schema.String),
  /** The checks on the decoded side, which the wire form does not show. */
  checks: Schema.optionalKey(Schema.Array(Schema.String))
})

/** One Schema of a gateway: payload, success, failure or token. */
export const SchemaSnapshot = Schema.Struct({
  /** `SchemaRepresentation.toJson` of the encoded side; null when the Schema has no representation. */
  representation: Schema.NullOr(Schema.Json),
  /** A one-line rendering of the Schema (the fingerprint's fallback when there is no representation). */
  description: Schema.String,
  /** `bytes`: a plain `Schema.Uint8Array` crosses as raw bytes; `binary`: SchemaBinary's encoding. */
  codec: Schema.Literals(["binary", "bytes"]),
  /** Decoding steps by path (`""` is the value itself, `.field`, `<Member>`, `[]`...). */
  decoding: Schema.optionalKey(Schema.Record(Schema.String, Decoding))
})

/** The type of {@link SchemaSnapshot}. */
export type SchemaSnapshot = typeof SchemaSnapshot.Type

const TimeoutMillis = Schema.Union([
  Schema.Number.check(Schema.isFinite(), Schema.isGreaterThanOrEqualTo(0)),
  Schema.Literal("infinity")
])

/** One method: kind, default timeout in milliseconds, and its three Schemas. */
export const MethodSnapshot = Schema.Struct({
  kind: Schema.Literals(["ask", "tell"]),
  timeoutMillis: Schema.optionalKey(TimeoutMillis),
  payload: SchemaSnapshot,
  success: SchemaSnapshot,
  failure: SchemaSnapshot
})

/** The type of {@link MethodSnapshot}. */
export type MethodSnapshot = typeof MethodSnapshot.Type

/** A gateway as the wire sees it. */
export const GatewaySnapshot = Schema.Struct({
  format: Schema.Literal(FORMAT),
  version: Schema.Literal(VERSION),
  gateway: Schema.String,
  fingerprint: Schema.String,
  /** The Schema of the fencing token, when the gateway declares one. */
  token: Schema.optionalKey(SchemaSnapshot),
  methods: Schema.Record(Schema.String, MethodSnapshot)
})

/** The type of {@link GatewaySnapshot}. */
export type GatewaySnapshot = typeof GatewaySnapshot.Type

// ---------------------------------------------------------------------------------------------------------------
// Reading and writing
// ---------------------------------------------------------------------------------------------------------------

/** Why a snapshot could not be read (the reasons of `RpcCompatibility.SnapshotError`). */
export interface ParseFailure {
  readonly reason: "InvalidJson" | "InvalidSnapshot" | "UnsupportedVersion"
  readonly detail: string
}

const decodeGatewaySnapshot = Schema.decodeUnknownResult(GatewaySnapshot)

/**
 * Reads a snapshot from JSON text or a parsed JSON value, synchronously: the file a user wrote and the text a peer
 * sent at connect go through the same checks, down to every representation being a SchemaRepresentation document.
 */
export const parse = (input: unknown): Result.Result<GatewaySnapshot, ParseFailure> => {
  const fail = (reason: ParseFailure["reason"], detail: string) => Result.fail({ reason, detail })
  let json: unknown = input
  if (typeof input === "string") {
    try {
      json = JSON.parse(input)
    } catch (error) {
      return fail("InvalidJson", error instanceof Error ? error.message : String(error))
    }
  }
  if (hasProperty(json, "format") && json.format !== FORMAT) {
    return fail("InvalidSnapshot", `its format is ${JSON.stringify(json.format)}, not "${FORMAT}"`)
  }
  if (hasProperty(json, "version") && json.version !== VERSION) {
    return fail(
      "UnsupportedVersion",
      `it is version ${JSON.stringify(json.version)}; this library reads version ${VERSION}`
    )
  }
  const decoded = decodeGatewaySnapshot(json)
  if (Result.isFailure(decoded)) return fail("InvalidSnapshot", decoded.failure.message)
  const value = decoded.success
  const schemas: Array<[string, SchemaSnapshot]> = []
  if (value.token !== undefined) schemas.push(["token", value.token])
  for (const [name, method] of Object.entries(value.methods)) {
    schemas.push(
      [`methods.${name}.payload`, method.payload],
      [`methods.${name}.success`, method.success],
      [`methods.${name}.failure`, method.failure]
    )
  }
  for (const [where, schema] of schemas) {
    if (schema.representation === null) continue
    try {
      SchemaRepresentation.fromJson(schema.representation)
    } catch (error) {
      return fail(
        "InvalidSnapshot",
        `${where}.representation is not a SchemaRepresentation document (${
          error instanceof Error ? error.message : String(error)
        })`
      )
    }
  }
  return Result.succeed(value)
}

const encodeGatewaySnapshot = Schema.encodeSync(GatewaySnapshot)
const texts = new WeakMap<GatewaySnapshot, string>()

/** A snapshot as compact JSON text, as it crosses the wire at connect (cached: snapshots are immutable). */
export const toText = (snapshot: GatewaySnapshot): string => {
  let text = texts.get(snapshot)
  if (text === undefined) {
    text = JSON.stringify(encodeGatewaySnapshot(snapshot))
    texts.set(snapshot, text)
  }
  return text
}

// ---------------------------------------------------------------------------------------------------------------
// From a gateway
// ---------------------------------------------------------------------------------------------------------------

const snapshots = new WeakMap<RpcGateway.Any, GatewaySnapshot>()

/** The snapshot of a live gateway (cached: a gateway is immutable). */
export const fromGateway = (gateway: RpcGateway.Any): GatewaySnapshot => {
  const cached = snapshots.get(gateway)
  if (cached !== undefined) return cached
  const methods: Record<string, MethodSnapshot> = {}
  for (const name of Object.keys(gateway.methods).sort()) {
    const method = (gateway.methods as RpcGateway.Methods)[name]!
    const timeout = method.timeout === undefined ? undefined : Duration.toMillis(method.timeout)
    methods[name] = {
      kind: method.kind,
      ...(timeout === undefined ? {} : { timeoutMillis: Number.isFinite(timeout) ? timeout : "infinity" as const }),
      payload: fromSchema(method.payload),
      success: fromSchema(method.success),
      failure: fromSchema(method.failure)
    }
  }
  const token = tokenOf(gateway)
  const snapshot: GatewaySnapshot = {
    format: FORMAT,
    version: VERSION,
    gateway: gateway.name,
    fingerprint: gateway.fingerprint,
    ...(token === undefined ? {} : { token: fromSchema(token) }),
    methods
  }
  snapshots.set(gateway, snapshot)
  return snapshot
}

// Gateways are about to declare their fencing token's Schema; until `RpcGateway` has the field, a gateway object
// that carries a Schema under `token` is honoured, so snapshots and the checker need no change when it lands.
const tokenOf = (gateway: RpcGateway.Any): Schema.Top | undefined => {
  const token = (gateway as { readonly token?: unknown }).token
  return Schema.isSchema(token) ? token : undefined
}

/** The snapshot of one Schema. */
export const fromSchema = (schema: Schema.Top): SchemaSnapshot => {
  const description = describe(schema.ast)
  // Mirrors `codecOf` in wire.ts: the plain Uint8Array Schema bypasses SchemaBinary.
  const codec = schema === Schema.Uint8Array ? "bytes" as const : "binary" as const
  let representation: Schema.Json | null = null
  try {
    representation = SchemaRepresentation.toJson(sanitize(SchemaRepresentation.toRepresentation(schema.ast)))
  } catch {
    return { representation: null, description, codec }
  }
  const decoding = decodingOf(schema.ast)
  return {
    representation,
    description,
    codec,
    ...(Object.keys(decoding).length === 0 ? {} : { decoding })
  }
}

/**
 * A one-line TypeScript-like rendering of a Schema's type side, named by identifiers where it has them (classes,
 * tagged errors). For a Schema without a representation it is all the snapshot has, so it spells out structure.
 */
export const describe = (root: SchemaAST.AST): string => {
  const visiting = new Set<SchemaAST.AST>()
  const go = (ast: SchemaAST.AST): string => {
    const identifier = ast.annotations?.identifier
    if (typeof identifier === "string" && visiting.size > 0) return identifier
    if (visiting.has(ast)) return typeof identifier === "string" ? identifier : "(recursive)"
    visiting.add(ast)
    try {
      return withChecks(ast, body(ast))
    } finally {
      visiting.delete(ast)
    }
  }
  const withChecks = (ast: SchemaAST.AST, text: string): string =>
    ast.checks === undefined ? text : `${text} & ${checkTexts(ast.checks).join(" & ")}`
  const body = (ast: SchemaAST.AST): string => {
    switch (ast._tag) {
      case "Declaration": {
        const expected = ast.annotations?.identifier ?? ast.annotations?.expected ?? "a declaration"
        const params = ast.typeParameters.map(go)
        return `${String(expected)}${params.length === 0 ? "" : `<${params.join(", ")}>`}`
      }
      case "Literal":
        return Layout.literalText(ast.literal)
      case "UniqueSymbol":
        return ast.symbol.toString()
      case "Enum":
        return ast.enums.map(([, value]) => JSON.stringify(value)).join(" | ")
      case "TemplateLiteral":
        return `\`${ast.parts.map((part) => part._tag === "Literal" ? String(part.literal) : `\${${go(part)}}`).join("")}\``
      case "Objects": {
        const fields = ast.propertySignatures.map((ps) =>
          `${Layout.fieldSegment(String(ps.name)).replace(/^\./, "")}${SchemaAST.isOptional(ps.type) ? "?" : ""}: ${go(ps.type)}`
        )
        const records = ast.indexSignatures.map((is) => `[key: ${go(is.parameter)}]: ${go(is.type)}`)
        const all = [...fields, ...records]
        return all.length === 0 ? "{}" : `{ ${all.join("; ")} }`
      }
      case "Arrays": {
        if (ast.elements.length === 0 && ast.rest.length === 1) return `ReadonlyArray<${go(ast.rest[0]!)}>`
        const elements = ast.elements.map((e) => `${go(e)}${SchemaAST.isOptional(e) ? "?" : ""}`)
        const rest = ast.rest.map((r, i) => i === 0 ? `...${go(r)}[]` : go(r))
        return `[${[...elements, ...rest].join(", ")}]`
      }
      case "Union":
        return ast.types.length === 0 ? "never" : ast.types.map(go).join(" | ")
      case "Suspend":
        return go(ast.thunk())
      default:
        return ast._tag === "ObjectKeyword" ? "object" : ast._tag.toLowerCase()
    }
  }
  try {
    return go(SchemaAST.toType(root))
  } catch {
    return `<${root._tag}>`
  }
}

/**
 * Gives filters and declarations without a representation one of ours, so the document serializes: without it a
 * single custom filter would cost the whole Schema its representation. The `expected` text stands for the filter.
 */
const sanitize = (document: SchemaRepresentation.Document): SchemaRepresentation.Document => {
  const seen = new Map<object, unknown>()
  const go = (value: unknown): unknown => {
    if (Array.isArray(value)) return value.map(go)
    if (value === null || typeof value !== "object") return value
    const hit = seen.get(value)
    if (hit !== undefined) return hit
    const out: Record<string, unknown> = {}
    seen.set(value, out)
    for (const [key, inner] of Object.entries(value)) out[key] = key === "annotations" ? inner : go(inner)
    const tag = (value as { readonly _tag?: unknown })._tag
    if ((tag === "Filter" || tag === "Declaration") && out.representation === undefined) {
      const annotations = (value as { readonly annotations?: Record<string, unknown> }).annotations
      const text = annotations?.expected ?? annotations?.description ?? annotations?.title ?? annotations?.identifier
      out.representation = {
        id: tag === "Filter" ? Layout.OPAQUE_FILTER_ID : Layout.OPAQUE_DECLARATION_ID,
        payload: { expected: typeof text === "string" ? text : null }
      }
    }
    return out
  }
  return go(document) as SchemaRepresentation.Document
}

type Note = { decodesTo?: string; checks?: Array<string> }

const checkTexts = (checks: ReadonlyArray<SchemaAST.Check<any>>): Array<string> =>
  checks.flatMap((check): Array<string> => {
    const representation = check.annotations?.representation as { id?: unknown; payload?: unknown } | undefined
    if (representation !== undefined && typeof representation.id === "string") {
      const payload = representation.payload
      return [
        `${representation.id.replace(/^effect\/schema\//, "")}${
          payload === null || payload === undefined ? "" : `(${Layout.stableText(payload)})`
        }`
      ]
    }
    if (check._tag === "FilterGroup") return checkTexts(check.checks)
    return [Layout.opaqueFilterText(check.annotations?.expected ?? check.annotations?.description)]
  })

// A class only constructs its instance from the decoded fields: nothing a writer sends can be refused by it.
const isClass = (ast: SchemaAST.AST): boolean =>
  ast._tag === "Declaration" && ast.annotations !== undefined && "~constructor" in ast.annotations

const nativeParameters: Record<string, ReadonlyArray<string>> = {
  "effect/schema/Option": ["Some"],
  "effect/schema/Result": ["Success", "Failure"],
  "effect/schema/Exit": ["Success", "Failure", "Die"],
  "effect/schema/Cause": ["Fail", "Die"],
  "effect/schema/CauseReason": ["Fail", "Die"]
}

/**
 * The decoding steps of a Schema by path. The walk follows the encoded side exactly as the representation (and so
 * the layout) does, so a path here names the same node the checker compares.
 */
const decodingOf = (root: SchemaAST.AST): Record<string, Note> => {
  const notes: Record<string, Note> = {}
  const visiting = new Set<SchemaAST.AST>()
  const note = (path: string): Note => (notes[path] ??= {})

  const walk = (input: SchemaAST.AST, path: string): void => {
    let ast = input
    if (ast.encoding !== undefined && !isClass(ast)) {
      // A transformation that keeps the type (a decoding default, a trim) is not listed: the reader's value is the
      // wire value, or one the writer could have sent itself.
      const decoded = describe(SchemaAST.toType(ast))
      if (decoded !== describe(SchemaAST.toEncoded(ast))) note(path).decodesTo = decoded
    }
    while (ast.encoding !== undefined) {
      if (ast.checks !== undefined) {
        const texts = checkTexts(ast.checks)
        if (texts.length > 0) (note(path).checks ??= []).push(...texts)
      }
      ast = ast.encoding[ast.encoding.length - 1]!.to
    }
    if (visiting.has(ast)) return
    visiting.add(ast)
    switch (ast._tag) {
      case "Objects":
        for (const ps of ast.propertySignatures) walk(ps.type, path + Layout.fieldSegment(String(ps.name)))
        for (const is of ast.indexSignatures) walk(is.type, path + Layout.RECORD_SEGMENT)
        break
      case "Arrays":
        ast.elements.forEach((element, i) => walk(element, path + Layout.elementSegment(i)))
        ast.rest.forEach((rest, i) => walk(rest, path + (i === 0 ? Layout.REST_SEGMENT : Layout.tailSegment(i))))
        break
      case "Suspend":
        walk(ast.thunk(), path)
        break
      case "Union":
        walkUnion(ast, path)
        break
      case "Declaration": {
        const id = (ast.annotations?.representation as { id?: unknown } | undefined)?.id
        const labels = typeof id === "string" ? nativeParameters[id] : undefined
        if (labels !== undefined) {
          ast.typeParameters.forEach((param, i) => {
            const label = labels[i]
            if (label !== undefined) walk(param, path + Layout.memberSegment(label))
          })
        }
        break
      }
    }
    visiting.delete(ast)
  }

  const walkUnion = (union: SchemaAST.Union, path: string): void => {
    const members: Array<SchemaAST.AST> = []
    const flatten = (ast: SchemaAST.AST): void => {
      let node = ast
      while (node._tag === "Suspend") node = node.thunk()
      if (node._tag === "Never") return
      if (node._tag === "Union" && node.encoding === undefined) node.types.forEach(flatten)
      else members.push(node)
    }
    union.types.forEach(flatten)
    const classified = members.flatMap((member) => {
      try {
        const document = SchemaRepresentation.toRepresentation(member)
        const resolve = Layout.resolverOf(document)
        return [{ member, c: Layout.classifyMember(resolve(document.representation), resolve) }]
      } catch {
        return []
      }
    })
    if (classified.length !== members.length) return
    const classes = classified.map(({ c }) => c)
    if (!Layout.hasSelector(classes)) {
      const single = classified.find(({ c }) => c._ === "row")
      if (single !== undefined) walk(single.member, path)
      return
    }
    for (const { c, member } of classified) {
      if (c._ !== "literal") walk(member, path + Layout.memberSegment(Layout.memberLabel(c)))
    }
  }

  walk(root, "")
  return notes
}

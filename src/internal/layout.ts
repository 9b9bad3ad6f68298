/**
 * The binary layout of a Schema as the wire sees it, computed from its `SchemaRepresentation` (the encoded side)
 * so that two peers, or two snapshots, can be compared without their code.
 *
 * This mirrors how Effect's SchemaBinary compiles a layout (`compileLayout` in `effect/encoding/SchemaBinary.ts`,
 * effect 4.1): struct fields are keyed by `fieldId` or the FNV-1a hash of their name, unions of two or more members
 * prefix every value with a member selector (a kind byte, or a variant tag hashed from the member's required literal
 * fields), a union that flattens to one member or to literals of one kind has no selector, and a number proven to be
 * an integer is a varint. What the compatibility checker concludes rests on this mirror; its tests encode with one
 * Schema and decode with another through the real codec to keep the two in step.
 *
 * About 800 lines, on purpose: it is one mirror of one compiler (SchemaBinary's `compileLayout`), case for case,
 * and reads best next to it in the same order; the comparison of two layouts is compatibility.ts.
 */
import type * as SchemaAST from "effect/SchemaAST"
import type * as SchemaRepresentation from "effect/SchemaRepresentation"

/** The key SchemaBinary's `fieldId` annotation is stored under (on the property signature). */
export const FIELD_ID_ANNOTATION = "~effect/encoding/SchemaBinary/fieldId"

/** Representation ids this library gives filters and declarations that have none, so a document still serializes. */
export const OPAQUE_FILTER_ID = "effect-actor-rpc/opaque-filter"
export const OPAQUE_DECLARATION_ID = "effect-actor-rpc/opaque-declaration"

const INT_CHECK_ID = "effect/schema/isInt"

/** The leaves of a layout; `int64` covers `Date` and `DateTime.Utc`, which share one encoding (epoch milliseconds). */
export type LeafKind =
  | "bool"
  | "null"
  | "undefined"
  | "number"
  | "int"
  | "string"
  | "symbol"
  | "bytes"
  | "bigint"
  | "json"
  | "duration"
  | "bigDecimal"
  | "dateTimeZoned"
  | "int64"

/** A layout node. Shapes form a graph: a recursive Schema gives a cycle. */
export type Shape =
  | LeafShape
  | LiteralShape
  | NeverShape
  | StructShape
  | ArrayShape
  | UnionShape
  | WrapShape
  | OpaqueShape

interface Node {
  /** Unique per compiled shape, for memo keys. */
  readonly id: number
  /** Canonical descriptors of the checks the reader runs on this node's encoded value (integer proof excluded). */
  readonly checks: ReadonlyArray<string>
}

export interface LeafShape extends Node {
  readonly _: "leaf"
  readonly kind: LeafKind
}

export interface LiteralShape extends Node {
  readonly _: "literal"
  readonly leaf: LeafKind
  readonly values: ReadonlyArray<SchemaAST.LiteralValue>
}

export interface NeverShape extends Node {
  readonly _: "never"
}

export interface Field {
  readonly name: string
  readonly id: number
  readonly optional: boolean
  shape: Shape
}

export interface Extra {
  /** The key Schema, compared by its canonical text. */
  readonly parameter: string
  /** Whether the key Schema matches every string key. */
  readonly everyKey: boolean
  shape: Shape
}

export interface StructShape extends Node {
  readonly _: "struct"
  readonly fields: Array<Field>
  readonly extras: Array<Extra>
}

export interface Slot {
  readonly optional: boolean
  shape: Shape
}

export interface ArrayShape extends Node {
  readonly _: "array"
  readonly elements: Array<Slot>
  readonly rest: Array<Shape>
}

export interface Variant {
  /** The member's required literal fields (its sentinels), canonical: `_tag="A"`. */
  readonly key: string
  /** A short name for paths: the `_tag` alone when it is the only sentinel. */
  readonly label: string
  /** The member without its sentinel fields (a struct), or the whole tuple. */
  payload: Shape
}

export interface Row {
  /** SchemaBinary's member kind (one byte on the wire). */
  readonly kind: MemberKind
  shape: Shape
}

export interface UnionShape extends Node {
  readonly _: "union"
  readonly variants: Array<Variant>
  readonly rows: Array<Row>
}

/** Option, Result, Exit, Cause and Cause.Reason: SchemaBinary encodes them natively around their parameters. */
export interface WrapShape extends Node {
  readonly _: "wrap"
  readonly wrapper: "Option" | "Result" | "Exit" | "Cause" | "CauseReason"
  /** Labelled parameters: `Some`, `Success`, `Failure`, `Die`, `Fail`. */
  readonly parts: Array<{ readonly label: string; shape: Shape }>
}

/** A declaration whose binary layout this module does not know, or a Schema SchemaBinary cannot encode. */
export interface OpaqueShape extends Node {
  readonly _: "opaque"
  /** What it is, for messages: a declaration id or the reason it is unsupported. */
  readonly what: string
  /** Canonical text of the whole node: two opaque shapes are interchangeable only when these are equal. */
  readonly text: string
}

/** SchemaBinary's member kinds: the byte that selects a union member that is not a tagged variant. */
export type MemberKind =
  | "bool"
  | "null"
  | "undefined"
  | "number"
  | "string"
  | "bytes"
  | "bigint"
  | "int64"
  | "struct"
  | "array"
  | "option"
  | "result"
  | "duration"
  | "bigDecimal"
  | "dateTimeZoned"
  | "json"
  | "exit"
  | "cause"
  | "causeReason"

// ---------------------------------------------------------------------------------------------------------------
// Paths
// ---------------------------------------------------------------------------------------------------------------

const IDENTIFIER = /^[A-Za-z_$][A-Za-z0-9_$]*$/

/** A struct field: `.name`, or `["a name"]` when it is not an identifier. */
export const fieldSegment = (name: string): string => IDENTIFIER.test(name) ? `.${name}` : `[${JSON.stringify(name)}]`

/** The value of a record (an index signature). */
export const RECORD_SEGMENT = "{}"

/** Tuple element `index`. */
export const elementSegment = (index: number): string => `[${index}]`

/** The rest elements of an array (every element of `Schema.Array`). */
export const REST_SEGMENT = "[]"

/** Rest element `index` after the first (the tail of `[...rest, a, b]`). */
export const tailSegment = (index: number): string => `[…${index}]`

/** A union member, or a parameter of Option/Result/Exit/Cause. */
export const memberSegment = (label: string): string => `<${label}>`

// ---------------------------------------------------------------------------------------------------------------
// Descriptors
// ---------------------------------------------------------------------------------------------------------------

/** FNV-1a over the UTF-8 bytes of a field name: SchemaBinary's default field id. */
export const fieldIdOf = (name: string): number => {
  const bytes = new TextEncoder().encode(name)
  let hash = 0x811C9DC5
  for (let i = 0; i < bytes.length; i++) hash = Math.imul(hash ^ bytes[i]!, 0x01000193)
  return hash >>> 0
}

/** JSON that also prints bigints and symbols, for canonical texts and messages. */
export const stableText = (value: unknown): string => {
  const seen = new WeakSet<object>()
  const go = (v: unknown): unknown => {
    if (typeof v === "bigint") return `${v}n`
    if (typeof v === "symbol") return v.toString()
    if (typeof v === "function") return "<function>"
    if (v === null || typeof v !== "object") return v
    if (seen.has(v)) return "<cycle>"
    seen.add(v)
    const out = Array.isArray(v) ? v.map(go) : Object.fromEntries(
      Object.keys(v).sort().map((k) => [k, go((v as Record<string, unknown>)[k])])
    )
    seen.delete(v)
    return out
  }
  return JSON.stringify(go(value)) ?? "undefined"
}

/** A literal as it appears in messages: strings quoted, bigints with `n`. */
export const literalText = (value: SchemaAST.LiteralValue): string =>
  typeof value === "string" ? JSON.stringify(value) : typeof value === "bigint" ? `${value}n` : String(value)

type Check = SchemaRepresentation.Check

/** How a filter without a representation of its own reads: by its `expected` (or `description`) text, if any. */
export const opaqueFilterText = (said: unknown): string =>
  said === undefined || said === null ? "a filter" : `a filter (${typeof said === "string" ? said : stableText(said)})`

const checkDescriptors = (checks: ReadonlyArray<Check>): Array<string> =>
  checks.flatMap((check): Array<string> => {
    const representation = check.representation
    if (representation !== undefined) {
      if (representation.id === INT_CHECK_ID) return []
      if (representation.id === OPAQUE_FILTER_ID) {
        const payload = representation.payload as { readonly expected?: unknown } | null | undefined
        return [opaqueFilterText(payload?.expected)]
      }
      return [`${representation.id.replace(/^effect\/schema\//, "")}${payloadText(representation.payload)}`]
    }
    if (check._tag === "FilterGroup") return checkDescriptors(check.checks)
    return [opaqueFilterText(check.annotations?.expected ?? check.annotations?.description)]
  })

const payloadText = (payload: unknown): string =>
  payload === null || payload === undefined ? "" : `(${stableText(payload)})`

const provesInt = (checks: ReadonlyArray<Check>): boolean =>
  checks.some((check) =>
    check.representation?.id === INT_CHECK_ID || (check._tag === "FilterGroup" && provesInt(check.checks))
  )

// ---------------------------------------------------------------------------------------------------------------
// Compiling a representation
// ---------------------------------------------------------------------------------------------------------------

type Rep = SchemaRepresentation.Representation

/** Resolves references and suspensions to the node that carries structure. */
const resolver = (references: SchemaRepresentation.References) => (rep: Rep): Rep => {
  let current = rep
  // Bounded: a chain of references longer than the table is a cycle without structure.
  for (let i = 0; i <= Object.keys(references).length + 1; i++) {
    if (current._tag === "Reference") {
      const target = references[current.$ref]
      if (target === undefined) return { _tag: "Never", checks: [] }
      current = target
    } else if (current._tag === "Suspend") {
      current = current.thunk
    } else {
      return current
    }
  }
  return { _tag: "Never", checks: [] }
}

const declarationId = (rep: SchemaRepresentation.Declaration): string | undefined => rep.representation?.id

/** The member kind SchemaBinary selects a union member by; `undefined` for a member it cannot tell apart. */
const memberKindOf = (rep: Rep): MemberKind | undefined => {
  switch (rep._tag) {
    case "String":
    case "TemplateLiteral":
    case "Symbol":
    case "UniqueSymbol":
      return "string"
    case "Boolean":
      return "bool"
    case "Null":
      return "null"
    case "Undefined":
    case "Void":
      return "undefined"
    case "Number":
      return "number"
    case "BigInt":
      return "bigint"
    case "Literal":
      return literalMemberKind(rep.literal)
    case "Unknown":
    case "Any":
    case "ObjectKeyword":
      return "json"
    case "Objects":
      return "struct"
    case "Arrays":
      return "array"
    case "Declaration": {
      const id = declarationId(rep)
      return id === undefined ? undefined : nativeKinds[id]
    }
    default:
      return undefined
  }
}

const literalMemberKind = (literal: SchemaAST.LiteralValue): MemberKind =>
  typeof literal === "string"
    ? "string"
    : typeof literal === "number"
    ? "number"
    : typeof literal === "boolean"
    ? "bool"
    : "bigint"

const literalLeaf = (literal: SchemaAST.LiteralValue): LeafKind =>
  typeof literal === "string" ? "string" : typeof literal === "number" ? "number" : typeof literal === "boolean" ? "bool" : "bigint"

const nativeKinds: Record<string, MemberKind> = {
  "effect/schema/Date": "int64",
  "effect/schema/DateTimeUtc": "int64",
  "effect/schema/DateTimeZoned": "dateTimeZoned",
  "effect/schema/Duration": "duration",
  "effect/schema/BigDecimal": "bigDecimal",
  "effect/schema/Uint8Array": "bytes",
  "effect/schema/Option": "option",
  "effect/schema/Result": "result",
  "effect/schema/Exit": "exit",
  "effect/schema/Cause": "cause",
  "effect/schema/CauseReason": "causeReason",
  "effect/schema/Json": "json",
  "effect/schema/MutableJson": "json"
}

interface Sentinel {
  readonly key: string
  readonly literal: SchemaAST.LiteralValue | symbol
}

/** A member's required literal fields or elements: what SchemaBinary hashes into its variant tag. */
const sentinelsOf = (rep: Rep, resolve: (rep: Rep) => Rep): Array<Sentinel> => {
  const literalOf = (type: Rep): SchemaAST.LiteralValue | symbol | undefined => {
    const resolved = resolve(type)
    return resolved._tag === "Literal" ? resolved.literal : resolved._tag === "UniqueSymbol" ? resolved.symbol : undefined
  }
  const out: Array<Sentinel> = []
  if (rep._tag === "Objects") {
    for (const ps of rep.propertySignatures) {
      if (ps.isOptional) continue
      const literal = literalOf(ps.type)
      if (literal !== undefined) out.push({ key: String(ps.name), literal })
    }
  } else if (rep._tag === "Arrays") {
    rep.elements.forEach((element, index) => {
      if (element.isOptional) return
      const literal = literalOf(element.type)
      if (literal !== undefined) out.push({ key: String(index), literal })
    })
  }
  return out.sort((a, b) => a.key < b.key ? -1 : a.key > b.key ? 1 : 0)
}

const sentinelText = (literal: SchemaAST.LiteralValue | symbol): string =>
  typeof literal === "symbol" ? literal.toString() : literalText(literal)

const variantKey = (sentinels: ReadonlyArray<Sentinel>): string =>
  sentinels.map((s) => `${s.key}=${sentinelText(s.literal)}`).join(",")

const variantLabel = (sentinels: ReadonlyArray<Sentinel>): string =>
  sentinels.length === 1 && sentinels[0]!.key === "_tag" && typeof sentinels[0]!.literal === "string"
    ? sentinels[0]!.literal
    : variantKey(sentinels)

/** The members of a union as SchemaBinary sees them: nested unions flattened, enums as literals, `Never` dropped. */
export const flattenMembers = (types: ReadonlyArray<Rep>, resolve: (rep: Rep) => Rep): Array<Rep> => {
  const out: Array<Rep> = []
  const seen = new Set<Rep>()
  const go = (rep: Rep): void => {
    const resolved = resolve(rep)
    if (seen.has(resolved)) return
    seen.add(resolved)
    switch (resolved._tag) {
      case "Never":
        return
      case "Union":
        resolved.types.forEach(go)
        return
      case "Enum":
        for (const [, value] of resolved.enums) out.push({ _tag: "Literal", literal: value, checks: [] })
        return
      default:
        out.push(resolved)
    }
  }
  types.forEach(go)
  return out
}

/** How a member is selected: by its variant tag (tagged structs and tuples) or by its kind. */
export type MemberClass =
  | { readonly _: "variant"; readonly key: string; readonly label: string }
  | { readonly _: "literal"; readonly kind: MemberKind }
  | { readonly _: "row"; readonly kind: MemberKind }
  | { readonly _: "unsupported" }

export const classifyMember = (rep: Rep, resolve: (rep: Rep) => Rep): MemberClass => {
  if (rep._tag === "Literal") return { _: "literal", kind: literalMemberKind(rep.literal) }
  if (rep._tag === "UniqueSymbol") return { _: "literal", kind: "string" }
  if (rep._tag === "Objects" || rep._tag === "Arrays") {
    const sentinels = sentinelsOf(rep, resolve)
    if (sentinels.length > 0) return { _: "variant", key: variantKey(sentinels), label: variantLabel(sentinels) }
  }
  const kind = memberKindOf(rep)
  return kind === undefined ? { _: "unsupported" } : { _: "row", kind }
}

/**
 * Whether a union's flattened members get a member selector on the wire. SchemaBinary writes a bare value when the
 * members are literals of one kind, or a single non-literal, non-variant member.
 */
export const hasSelector = (classes: ReadonlyArray<MemberClass>): boolean => {
  const variants = classes.filter((c) => c._ === "variant").length
  const rows = classes.filter((c) => c._ === "row").length
  const literalKinds = new Set(classes.flatMap((c) => c._ === "literal" ? [c.kind] : []))
  if (variants === 0 && rows === 0 && literalKinds.size === 1) return false
  if (variants === 0 && literalKinds.size === 0 && rows === 1) return false
  return true
}

/** The path label of a union member: its variant label, or its kind. */
export const memberLabel = (c: MemberClass): string =>
  c._ === "variant" ? c.label : c._ === "unsupported" ? "?" : c.kind

/**
 * Compiles the layout of a representation document. Never throws: what SchemaBinary itself would refuse to encode
 * becomes an opaque shape that names the reason.
 */
export const compile = (document: SchemaRepresentation.Document): Shape => {
  const resolve = resolver(document.references)
  const memo = new Map<Rep, Shape>()
  let nextId = 0
  const id = () => nextId++

  const opaque = (what: string, rep: Rep): OpaqueShape => ({
    _: "opaque",
    id: id(),
    checks: [],
    what,
    text: stableText(strip(rep, resolve))
  })

  const leaf = (kind: LeafKind, checks: Array<string>): LeafShape => ({ _: "leaf", id: id(), checks, kind })

  // A union that collapses to one member keeps the union's own checks on that member.
  const withChecks = (shape: Shape, checks: ReadonlyArray<string>): Shape =>
    checks.length === 0 ? shape : ({ ...shape, id: id(), checks: [...shape.checks, ...checks] } as Shape)

  const compileNode = (input: Rep): Shape => {
    const rep = resolve(input)
    const hit = memo.get(rep)
    if (hit !== undefined) return hit
    const shape = go(rep)
    memo.set(rep, shape)
    return shape
  }

  const go = (rep: Rep): Shape => {
    const checks = "checks" in rep ? checkDescriptors(rep.checks) : []
    switch (rep._tag) {
      case "String":
        return leaf("string", checks)
      case "TemplateLiteral":
        // The template is a check on the string the reader decodes.
        return leaf("string", [...checks, `template ${stableText(strip(rep, resolve))}`])
      case "Symbol":
      case "UniqueSymbol":
        return leaf("symbol", rep._tag === "UniqueSymbol" ? [...checks, `symbol ${rep.symbol.toString()}`] : checks)
      case "Boolean":
        return leaf("bool", checks)
      case "Null":
        return leaf("null", checks)
      case "Undefined":
      case "Void":
        return leaf("undefined", checks)
      case "Number":
        return leaf(provesInt(rep.checks) ? "int" : "number", checks)
      case "BigInt":
        return leaf("bigint", checks)
      case "Literal":
        return { _: "literal", id: id(), checks, leaf: literalLeaf(rep.literal), values: [rep.literal] }
      case "Unknown":
      case "Any":
        return leaf("json", checks)
      case "ObjectKeyword":
        return leaf("json", [...checks, "an object"])
      case "Never":
        return { _: "never", id: id(), checks }
      case "Enum":
        return compileUnion(rep, flattenMembers([rep], resolve), checks)
      case "Union":
        return compileUnion(rep, flattenMembers(rep.types, resolve), checks)
      case "Objects":
        return compileStruct(rep, checks)
      case "Arrays":
        return compileArray(rep, checks)
      case "Declaration":
        return compileDeclaration(rep, checks)
      case "Reference":
      case "Suspend":
        // `resolve` only returns these for a cycle without structure, which SchemaBinary cannot encode either.
        return opaque("a recursive Schema without structure", rep)
    }
  }

  const compileStruct = (rep: SchemaRepresentation.Objects, checks: Array<string>): Shape => {
    const shape: StructShape = { _: "struct", id: id(), checks, fields: [], extras: [] }
    memo.set(rep, shape)
    const ids = new Set<number>()
    for (const ps of rep.propertySignatures) {
      if (typeof ps.name === "symbol") return opaque("a struct with a symbol key (SchemaBinary cannot encode it)", rep)
      const name = String(ps.name)
      const explicit = ps.annotations?.[FIELD_ID_ANNOTATION]
      const fieldId = typeof explicit === "number" ? explicit : fieldIdOf(name)
      if (ids.has(fieldId)) return opaque(`a struct whose field ids collide (${name})`, rep)
      ids.add(fieldId)
      shape.fields.push({ name, id: fieldId, optional: ps.isOptional, shape: undefined as unknown as Shape })
    }
    rep.propertySignatures.forEach((ps, i) => {
      shape.fields[i]!.shape = compileNode(ps.type)
    })
    for (const is of rep.indexSignatures) {
      const parameter = resolve(is.parameter)
      shape.extras.push({
        parameter: stableText(strip(parameter, resolve)),
        everyKey: parameter._tag === "String" && parameter.checks.length === 0,
        shape: compileNode(is.type)
      })
    }
    return shape
  }

  const compileArray = (rep: SchemaRepresentation.Arrays, checks: Array<string>): Shape => {
    const shape: ArrayShape = { _: "array", id: id(), checks, elements: [], rest: [] }
    memo.set(rep, shape)
    for (const element of rep.elements) shape.elements.push({ optional: element.isOptional, shape: compileNode(element.type) })
    for (const rest of rep.rest) shape.rest.push(compileNode(rest))
    return shape
  }

  const compileUnion = (rep: Rep, members: Array<Rep>, checks: Array<string>): Shape => {
    if (members.length === 0) return { _: "never", id: id(), checks }
    const classes = members.map((member) => classifyMember(member, resolve))
    if (classes.some((c) => c._ === "unsupported")) {
      return opaque("a union SchemaBinary cannot tell the members of apart", rep)
    }
    const literalValues = new Map<MemberKind, Array<SchemaAST.LiteralValue>>()
    const symbolChecks: Array<string> = []
    members.forEach((member, i) => {
      const c = classes[i]!
      if (c._ !== "literal") return
      if (member._tag === "UniqueSymbol") {
        symbolChecks.push(`symbol ${member.symbol.toString()}`)
        return
      }
      if (member._tag !== "Literal") return
      const values = literalValues.get(c.kind) ?? []
      if (!values.includes(member.literal)) values.push(member.literal)
      literalValues.set(c.kind, values)
    })
    if (symbolChecks.length > 0 && literalValues.has("string")) {
      return opaque("a union of string literals and unique symbols (SchemaBinary cannot tell them apart)", rep)
    }
    const literalRow = (kind: MemberKind): Shape =>
      symbolChecks.length > 0 && kind === "string"
        ? leaf("symbol", symbolChecks)
        : { _: "literal", id: id(), checks: [], leaf: literalLeaf(literalValues.get(kind)![0]!), values: literalValues.get(kind)! }
    if (!hasSelector(classes)) {
      const rowIndex = classes.findIndex((c) => c._ === "row")
      if (rowIndex >= 0) {
        return withChecks(compileNode(members[rowIndex]!), checks)
      }
      const kind = (classes[0] as { readonly kind: MemberKind }).kind
      return withChecks(literalRow(kind), checks)
    }
    const kinds = new Set<MemberKind>([...literalValues.keys(), ...(symbolChecks.length > 0 ? ["string" as const] : [])])
    for (const c of classes) {
      if (c._ !== "row") continue
      if (kinds.has(c.kind)) return opaque(`a union with two members of kind ${c.kind} (SchemaBinary cannot tell them apart)`, rep)
      kinds.add(c.kind)
    }
    const keys = new Set<string>()
    for (const c of classes) {
      if (c._ !== "variant") continue
      if (keys.has(c.key)) return opaque(`a union with two members tagged ${c.key}`, rep)
      keys.add(c.key)
    }
    const shape: UnionShape = { _: "union", id: id(), checks, variants: [], rows: [] }
    memo.set(rep, shape)
    for (const kind of kinds) {
      if (literalValues.has(kind) || (kind === "string" && symbolChecks.length > 0)) shape.rows.push({ kind, shape: literalRow(kind) })
    }
    members.forEach((member, i) => {
      const c = classes[i]!
      if (c._ === "row") shape.rows.push({ kind: c.kind, shape: compileNode(member) })
      if (c._ === "variant") {
        const full = compileNode(member)
        shape.variants.push({ key: c.key, label: c.label, payload: variantPayload(full, member) })
      }
    })
    return shape
  }

  // A tagged struct travels without its sentinel fields: the variant tag stands for them.
  const variantPayload = (full: Shape, member: Rep): Shape => {
    if (full._ !== "struct" || member._tag !== "Objects") return full
    const sentinels = new Set(sentinelsOf(member, resolve).map((s) => s.key))
    return { ...full, id: id(), fields: full.fields.filter((f) => !sentinels.has(f.name)) }
  }

  const compileDeclaration = (rep: SchemaRepresentation.Declaration, checks: Array<string>): Shape => {
    const declaration = declarationId(rep)
    const params = rep.typeParameters
    const wrap = (
      wrapper: WrapShape["wrapper"],
      labels: ReadonlyArray<string>
    ): Shape => {
      const shape: WrapShape = { _: "wrap", id: id(), checks, wrapper, parts: [] }
      memo.set(rep, shape)
      labels.forEach((label, i) => {
        const param = params[i]
        shape.parts.push({ label, shape: param === undefined ? { _: "never", id: id(), checks: [] } : compileNode(param) })
      })
      return shape
    }
    switch (declaration) {
      case "effect/schema/Date":
      case "effect/schema/DateTimeUtc":
        return leaf("int64", checks)
      case "effect/schema/DateTimeZoned":
        return leaf("dateTimeZoned", checks)
      case "effect/schema/Duration":
        return leaf("duration", checks)
      case "effect/schema/BigDecimal":
        return leaf("bigDecimal", checks)
      case "effect/schema/Uint8Array":
        return leaf("bytes", checks)
      case "effect/schema/Json":
      case "effect/schema/MutableJson":
        return leaf("json", checks)
      case "effect/schema/Option":
        return wrap("Option", ["Some"])
      case "effect/schema/Result":
        return wrap("Result", ["Success", "Failure"])
      case "effect/schema/Exit":
        return wrap("Exit", ["Success", "Failure", "Die"])
      case "effect/schema/Cause":
        return wrap("Cause", ["Fail", "Die"])
      case "effect/schema/CauseReason":
        return wrap("CauseReason", ["Fail", "Die"])
      default:
        return opaque(
          declaration === undefined || declaration === OPAQUE_DECLARATION_ID
            ? "a declaration without a representation"
            : `the declaration ${declaration}`,
          rep
        )
    }
  }

  return compileNode(document.representation)
}

/**
 * A representation with references inlined (cycles cut) and annotations dropped, for canonical comparison of the
 * parts the checker treats as opaque. Annotations are documentation; SchemaBinary reads only `fieldId`.
 */
export const strip = (rep: Rep, resolve: (rep: Rep) => Rep): unknown => {
  const visiting = new Set<Rep>()
  const go = (input: Rep): unknown => {
    const node = resolve(input)
    if (visiting.has(node)) return { _tag: "Cycle" }
    visiting.add(node)
    const out: Record<string, unknown> = {}
    for (const [key, value] of Object.entries(node)) {
      if (key === "annotations") continue
      out[key] = stripValue(value)
    }
    visiting.delete(node)
    return out
  }
  const stripValue = (value: unknown): unknown => {
    if (Array.isArray(value)) return value.map(stripValue)
    if (value !== null && typeof value === "object") {
      if ("_tag" in value && typeof (value as { _tag: unknown })._tag === "string" && isRepTag((value as Rep)._tag)) {
        return go(value as Rep)
      }
      const out: Record<string, unknown> = {}
      for (const [key, inner] of Object.entries(value)) {
        if (key === "annotations") {
          const fieldId = (inner as Record<string, unknown> | undefined)?.[FIELD_ID_ANNOTATION]
          if (fieldId !== undefined) out.fieldId = fieldId
          continue
        }
        out[key] = stripValue(inner)
      }
      return out
    }
    return value
  }
  return go(rep)
}

const REP_TAGS = new Set([
  "Declaration",
  "Reference",
  "Suspend",
  "Null",
  "Undefined",
  "Void",
  "Never",
  "Unknown",
  "Any",
  "String",
  "Number",
  "Boolean",
  "BigInt",
  "Symbol",
  "Literal",
  "UniqueSymbol",
  "ObjectKeyword",
  "Enum",
  "TemplateLiteral",
  "Arrays",
  "Objects",
  "Union"
])

const isRepTag = (tag: string): boolean => REP_TAGS.has(tag)

/** Resolves a document's references and suspensions. */
export const resolverOf = (document: SchemaRepresentation.Document) => resolver(document.references)

/** A readable name for a shape in messages. */
export const describeShape = (shape: Shape): string => {
  switch (shape._) {
    case "leaf":
      return leafNames[shape.kind]
    case "literal":
      return shape.values.length === 1
        ? `the literal ${literalText(shape.values[0]!)}`
        : `the literals ${shape.values.map(literalText).join(" | ")}`
    case "never":
      return "Never (no value)"
    case "struct":
      return shape.fields.length === 0 && shape.extras.length > 0 ? "a record" : "a struct"
    case "array":
      return shape.elements.length === 0 && shape.rest.length === 1 ? "an array" : "a tuple"
    case "union":
      return `a union of ${[...shape.variants.map((v) => v.label), ...shape.rows.map((r) => r.kind)].join(", ")}`
    case "wrap":
      return `${shape.wrapper === "CauseReason" ? "Cause.Reason" : shape.wrapper}`
    case "opaque":
      return shape.what
  }
}

const leafNames: Record<LeafKind, string> = {
  bool: "a boolean",
  null: "null",
  undefined: "undefined (void)",
  number: "a number",
  int: "an integer",
  string: "a string",
  symbol: "a symbol",
  bytes: "bytes (Uint8Array)",
  bigint: "a bigint",
  json: "a JSON value (Unknown/Any/Json)",
  duration: "a Duration",
  bigDecimal: "a BigDecimal",
  dateTimeZoned: "a DateTime.Zoned",
  int64: "a Date/DateTime.Utc"
}

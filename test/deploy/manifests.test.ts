/**
 * The deployment artefacts, checked without a cluster or a Docker engine:
 *  - every YAML document under deploy/ is a Kubernetes object of a known kind that validates against
 *    the Kubernetes schemas (kubernetes-models), with no field the schema does not know (the
 *    schemas accept unknown fields; the API server's strict field validation would not);
 *  - every proxy container: /healthz liveness and /readyz readiness probes that can reach it,
 *    requests and limits, read-only root, non-root, no capabilities, no privilege escalation,
 *    RuntimeDefault seccomp; listen settings consistent with the image (Dockerfile defaults):
 *    loopback, or client authentication from a Secret — never an unauthenticated open listener;
 *  - Services, ServiceAccounts (IRSA), kustomizations point at what exists;
 *  - the DaemonSet's client-config init container: writes containerd hosts files for the registry
 *    its proxy serves, pointing at that proxy, into the node's /etc/containerd/certs.d and nothing
 *    else (uid 0, and then capability-free);
 *  - the DaemonSet's cache-owner init container: hands the node's /var/cache/ecr-auth-proxy (the
 *    proxy's hostPath cache) to the image's uid, and does nothing else (uid 0 with CHOWN only).
 *    These two are the only containers allowed uid 0, CHOWN the only capability and only there,
 *    and those two directories the only hostPaths, each mounted only where it is needed;
 *  - docker-compose.yml publishes on loopback only and keeps the same hardening;
 *  - the Dockerfile's final stage is what the manifests assume.
 * Each rule is a function returning problems; the second half feeds it broken copies of the real
 * files to show that each rule does fail.
 */
import { readdirSync, readFileSync } from 'node:fs'
import { join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { parseAllDocuments, Scalar, visit } from 'yaml'
import { DaemonSet } from 'kubernetes-models/apps/v1/DaemonSet'
import { Deployment, type IDeployment } from 'kubernetes-models/apps/v1/Deployment'
import { Job } from 'kubernetes-models/batch/v1/Job'
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1/NetworkPolicy'
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget'
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap'
import type { IContainer } from 'kubernetes-models/v1/Container'
import { Namespace } from 'kubernetes-models/v1/Namespace'
import { Pod, type IPod } from 'kubernetes-models/v1/Pod'
import { Secret } from 'kubernetes-models/v1/Secret'
import { Service, type IService } from 'kubernetes-models/v1/Service'
import { ServiceAccount } from 'kubernetes-models/v1/ServiceAccount'
import type { IDaemonSet } from 'kubernetes-models/apps/v1/DaemonSet'
import type { IJob } from 'kubernetes-models/batch/v1/Job'
import { ClientConfigUsageError, parseOriginUrl, parseRegistryHost } from '../../src/client-config/names.js'
import { CONTAINERD_CERTS_DIR } from '../../src/client-config/render.js'
import { runClientConfig } from '../../src/client-config/command.js'
import { parseSize } from '../../src/cache/size.js'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const DEPLOY = join(ROOT, 'deploy')

type Obj = Record<string, unknown>
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v)
const obj = (v: unknown): Obj => isObj(v) ? v : {}
const arr = (v: unknown): unknown[] => Array.isArray(v) ? v : []
const str = (v: unknown): string | undefined => typeof v === 'string' ? v : undefined
const num = (v: unknown): number | undefined => typeof v === 'number' ? v : undefined

// --- Kubernetes kinds --------------------------------------------------------------------------

/** The kinds the manifests may use, each with its schema validation (throws when invalid). */
const KINDS: Record<string, (o: Obj) => void> = {
  'v1/Namespace': (o) => { new Namespace(o as never).validate() },
  'v1/ServiceAccount': (o) => { new ServiceAccount(o as never).validate() },
  'v1/Service': (o) => { new Service(o as never).validate() },
  'v1/Secret': (o) => { new Secret(o as never).validate() },
  'v1/ConfigMap': (o) => { new ConfigMap(o as never).validate() },
  'v1/Pod': (o) => { new Pod(o as never).validate() },
  'apps/v1/Deployment': (o) => { new Deployment(o as never).validate() },
  'apps/v1/DaemonSet': (o) => { new DaemonSet(o as never).validate() },
  'batch/v1/Job': (o) => { new Job(o as never).validate() },
  'policy/v1/PodDisruptionBudget': (o) => { new PodDisruptionBudget(o as never).validate() },
  'networking.k8s.io/v1/NetworkPolicy': (o) => { new NetworkPolicy(o as never).validate() }
}
const KUSTOMIZATION = 'kustomize.config.k8s.io/v1beta1/Kustomization'

// Every field each object may have, from the kubernetes-models types: `satisfies` makes the
// compiler check that each list is complete and has no extra entry.
type PodSpec = NonNullable<IPod['spec']>
type PodTemplate = NonNullable<IDeployment['spec']>['template']
type ObjectMeta = NonNullable<IDeployment['metadata']>
type SecurityContext = NonNullable<IContainer['securityContext']>
type PodSecurityContext = NonNullable<PodSpec['securityContext']>
type Capabilities = NonNullable<SecurityContext['capabilities']>
type SeccompProfile = NonNullable<SecurityContext['seccompProfile']>
type Probe = NonNullable<IContainer['livenessProbe']>
type HttpGet = NonNullable<Probe['httpGet']>
type Exec = NonNullable<Probe['exec']>
type Resources = NonNullable<IContainer['resources']>
type EnvVar = NonNullable<IContainer['env']>[number]
type ContainerPort = NonNullable<IContainer['ports']>[number]
type VolumeMount = NonNullable<IContainer['volumeMounts']>[number]
type Lifecycle = NonNullable<IContainer['lifecycle']>
type LifecycleHandler = NonNullable<Lifecycle['preStop']>
type Volume = NonNullable<PodSpec['volumes']>[number]
type SecretVolume = NonNullable<Volume['secret']>
type EmptyDir = NonNullable<Volume['emptyDir']>
type HostPath = NonNullable<Volume['hostPath']>
type DeploymentSpec = NonNullable<IDeployment['spec']>
type DaemonSetSpec = NonNullable<IDaemonSet['spec']>
type JobSpec = NonNullable<IJob['spec']>
type ServiceSpec = NonNullable<IService['spec']>
type ServicePort = NonNullable<ServiceSpec['ports']>[number]

/** The field names of T; the compiler checks that the list is complete and has nothing else. */
function fieldsOf<T> () {
  type Missing<K extends ReadonlyArray<keyof T>> = Exclude<keyof T, K[number]>
  return <const K extends ReadonlyArray<keyof T>>(...keys: K & ([Missing<K>] extends [never] ? unknown : { missing: Missing<K> })): ReadonlySet<string> =>
    new Set(keys as unknown as string[])
}
const fields = (...keys: string[]): ReadonlySet<string> => new Set(keys)

const OBJECT_META = fieldsOf<ObjectMeta>()(
  'annotations', 'creationTimestamp', 'deletionGracePeriodSeconds', 'deletionTimestamp',
  'finalizers', 'generateName', 'generation', 'labels', 'managedFields', 'name', 'namespace',
  'ownerReferences', 'resourceVersion', 'selfLink', 'uid'
)
const POD_SPEC = fieldsOf<PodSpec>()(
  'activeDeadlineSeconds', 'affinity', 'automountServiceAccountToken', 'containers', 'dnsConfig',
  'dnsPolicy', 'enableServiceLinks', 'ephemeralContainers', 'hostAliases', 'hostIPC',
  'hostNetwork', 'hostPID', 'hostUsers', 'hostname', 'imagePullSecrets', 'initContainers',
  'nodeName', 'nodeSelector', 'os', 'overhead', 'preemptionPolicy', 'priority',
  'priorityClassName', 'readinessGates', 'resourceClaims', 'resources', 'restartPolicy',
  'runtimeClassName', 'schedulerName', 'schedulingGates', 'securityContext', 'serviceAccount',
  'serviceAccountName', 'setHostnameAsFQDN', 'shareProcessNamespace', 'subdomain',
  'terminationGracePeriodSeconds', 'tolerations', 'topologySpreadConstraints', 'volumes'
)
const POD_TEMPLATE = fieldsOf<PodTemplate>()('metadata', 'spec')
const CONTAINER = fieldsOf<IContainer>()(
  'args', 'command', 'env', 'envFrom', 'image', 'imagePullPolicy', 'lifecycle', 'livenessProbe',
  'name', 'ports', 'readinessProbe', 'resizePolicy', 'resources', 'restartPolicy',
  'securityContext', 'startupProbe', 'stdin', 'stdinOnce', 'terminationMessagePath',
  'terminationMessagePolicy', 'tty', 'volumeDevices', 'volumeMounts', 'workingDir'
)
const SECURITY_CONTEXT = fieldsOf<SecurityContext>()(
  'allowPrivilegeEscalation', 'appArmorProfile', 'capabilities', 'privileged', 'procMount',
  'readOnlyRootFilesystem', 'runAsGroup', 'runAsNonRoot', 'runAsUser', 'seLinuxOptions',
  'seccompProfile', 'windowsOptions'
)
const POD_SECURITY_CONTEXT = fieldsOf<PodSecurityContext>()(
  'appArmorProfile', 'fsGroup', 'fsGroupChangePolicy', 'runAsGroup', 'runAsNonRoot', 'runAsUser',
  'seLinuxChangePolicy', 'seLinuxOptions', 'seccompProfile', 'supplementalGroups',
  'supplementalGroupsPolicy', 'sysctls', 'windowsOptions'
)
const CAPABILITIES = fieldsOf<Capabilities>()('add', 'drop')
const SECCOMP_PROFILE = fieldsOf<SeccompProfile>()('localhostProfile', 'type')
const PROBE = fieldsOf<Probe>()(
  'exec', 'failureThreshold', 'grpc', 'httpGet', 'initialDelaySeconds', 'periodSeconds',
  'successThreshold', 'tcpSocket', 'terminationGracePeriodSeconds', 'timeoutSeconds'
)
const HTTP_GET = fieldsOf<HttpGet>()('host', 'httpHeaders', 'path', 'port', 'scheme')
const EXEC = fieldsOf<Exec>()('command')
const RESOURCES = fieldsOf<Resources>()('claims', 'limits', 'requests')
const ENV_VAR = fieldsOf<EnvVar>()('name', 'value', 'valueFrom')
const CONTAINER_PORT = fieldsOf<ContainerPort>()(
  'containerPort', 'hostIP', 'hostPort', 'name', 'protocol'
)
const VOLUME_MOUNT = fieldsOf<VolumeMount>()(
  'mountPath', 'mountPropagation', 'name', 'readOnly', 'recursiveReadOnly', 'subPath',
  'subPathExpr'
)
const LIFECYCLE = fieldsOf<Lifecycle>()('postStart', 'preStop', 'stopSignal')
const LIFECYCLE_HANDLER = fieldsOf<LifecycleHandler>()('exec', 'httpGet', 'sleep', 'tcpSocket')
const VOLUME = fieldsOf<Volume>()(
  'awsElasticBlockStore', 'azureDisk', 'azureFile', 'cephfs', 'cinder', 'configMap', 'csi',
  'downwardAPI', 'emptyDir', 'ephemeral', 'fc', 'flexVolume', 'flocker', 'gcePersistentDisk',
  'gitRepo', 'glusterfs', 'hostPath', 'image', 'iscsi', 'name', 'nfs', 'persistentVolumeClaim',
  'photonPersistentDisk', 'portworxVolume', 'projected', 'quobyte', 'rbd', 'scaleIO', 'secret',
  'storageos', 'vsphereVolume'
)
const SECRET_VOLUME = fieldsOf<SecretVolume>()('defaultMode', 'items', 'optional', 'secretName')
const EMPTY_DIR = fieldsOf<EmptyDir>()('medium', 'sizeLimit')
const HOST_PATH = fieldsOf<HostPath>()('path', 'type')
const DEPLOYMENT_SPEC = fieldsOf<DeploymentSpec>()(
  'minReadySeconds', 'paused', 'progressDeadlineSeconds', 'replicas', 'revisionHistoryLimit',
  'selector', 'strategy', 'template'
)
const DAEMON_SET_SPEC = fieldsOf<DaemonSetSpec>()(
  'minReadySeconds', 'revisionHistoryLimit', 'selector', 'template', 'updateStrategy'
)
const JOB_SPEC = fieldsOf<JobSpec>()(
  'activeDeadlineSeconds', 'backoffLimit', 'backoffLimitPerIndex', 'completionMode', 'completions',
  'managedBy', 'manualSelector', 'maxFailedIndexes', 'parallelism', 'podFailurePolicy',
  'podReplacementPolicy', 'selector', 'successPolicy', 'suspend', 'template',
  'ttlSecondsAfterFinished'
)
const SERVICE_SPEC = fieldsOf<ServiceSpec>()(
  'allocateLoadBalancerNodePorts', 'clusterIP', 'clusterIPs', 'externalIPs', 'externalName',
  'externalTrafficPolicy', 'healthCheckNodePort', 'internalTrafficPolicy', 'ipFamilies',
  'ipFamilyPolicy', 'loadBalancerClass', 'loadBalancerIP', 'loadBalancerSourceRanges', 'ports',
  'publishNotReadyAddresses', 'selector', 'sessionAffinity', 'sessionAffinityConfig',
  'trafficDistribution', 'type'
)
const SERVICE_PORT = fieldsOf<ServicePort>()(
  'appProtocol', 'name', 'nodePort', 'port', 'protocol', 'targetPort'
)
const TOP_LEVEL = fieldsOf<IDeployment>()('apiVersion', 'kind', 'metadata', 'spec', 'status')

interface Shape { fields: ReadonlySet<string>, nested?: Record<string, Shape> }
const shape = (f: ReadonlySet<string>, nested?: Record<string, Shape>): Shape =>
  nested === undefined ? { fields: f } : { fields: f, nested }

const METADATA = shape(OBJECT_META)
const PROBE_SHAPE = shape(PROBE, { httpGet: shape(HTTP_GET), exec: shape(EXEC) })
const HANDLER_SHAPE = shape(LIFECYCLE_HANDLER, { httpGet: shape(HTTP_GET), exec: shape(EXEC) })
const CONTAINER_SHAPE = shape(CONTAINER, {
  securityContext: shape(SECURITY_CONTEXT, { capabilities: shape(CAPABILITIES), seccompProfile: shape(SECCOMP_PROFILE) }),
  livenessProbe: PROBE_SHAPE,
  readinessProbe: PROBE_SHAPE,
  startupProbe: PROBE_SHAPE,
  resources: shape(RESOURCES),
  env: shape(ENV_VAR),
  ports: shape(CONTAINER_PORT),
  volumeMounts: shape(VOLUME_MOUNT),
  lifecycle: shape(LIFECYCLE, { preStop: HANDLER_SHAPE, postStart: HANDLER_SHAPE })
})
const POD_SPEC_SHAPE = shape(POD_SPEC, {
  containers: CONTAINER_SHAPE,
  initContainers: CONTAINER_SHAPE,
  securityContext: shape(POD_SECURITY_CONTEXT, { seccompProfile: shape(SECCOMP_PROFILE) }),
  volumes: shape(VOLUME, { secret: shape(SECRET_VOLUME), emptyDir: shape(EMPTY_DIR), hostPath: shape(HOST_PATH) })
})
const TEMPLATE_SHAPE = shape(POD_TEMPLATE, { metadata: METADATA, spec: POD_SPEC_SHAPE })
const top = (spec: Shape): Shape => shape(TOP_LEVEL, { metadata: METADATA, spec })
const SHAPES: Record<string, Shape> = {
  'v1/Pod': top(POD_SPEC_SHAPE),
  'apps/v1/Deployment': top(shape(DEPLOYMENT_SPEC, { template: TEMPLATE_SHAPE })),
  'apps/v1/DaemonSet': top(shape(DAEMON_SET_SPEC, { template: TEMPLATE_SHAPE })),
  'batch/v1/Job': top(shape(JOB_SPEC, { template: TEMPLATE_SHAPE })),
  'v1/Service': top(shape(SERVICE_SPEC, { ports: shape(SERVICE_PORT) }))
}

function unknownFields (value: unknown, s: Shape, path: string): string[] {
  if (Array.isArray(value)) return value.flatMap((item, i) => unknownFields(item, s, `${path}[${i}]`))
  if (!isObj(value)) return []
  const problems: string[] = []
  for (const [key, inner] of Object.entries(value)) {
    if (!s.fields.has(key)) {
      problems.push(`${path}.${key}: unknown field`)
      continue
    }
    const nested = s.nested?.[key]
    if (nested !== undefined) problems.push(...unknownFields(inner, nested, `${path}.${key}`))
  }
  return problems
}

/** Schema validation, unknown fields and a name; kustomizations are checked per directory. */
function checkObject (o: Obj, where: string): string[] {
  const kind = `${str(o.apiVersion) ?? '?'}/${str(o.kind) ?? '?'}`
  if (kind === KUSTOMIZATION) return []
  const validate = KINDS[kind]
  if (validate === undefined) return [`${where}: unknown kind ${kind}`]
  const problems: string[] = []
  try {
    validate(o)
  } catch (err) {
    problems.push(`${where}: ${kind} fails the Kubernetes schema: ${(err as Error).message}`)
  }
  const s = SHAPES[kind]
  problems.push(...(s === undefined ? unknownFields(o.metadata, METADATA, `${where} metadata`) : unknownFields(o, s, where)))
  if (str(obj(o.metadata).name) === undefined) problems.push(`${where}: no metadata.name`)
  return problems
}

// --- the image (Dockerfile) ----------------------------------------------------------------------

interface ImageDefaults { host: string, port: number, uid: number }

interface Instruction { op: string, args: string }

function dockerInstructions (text: string): Instruction[] {
  const logical = text.replace(/\\\r?\n/g, ' ').split(/\r?\n/).map((line) => line.trim())
  return logical.filter((line) => line !== '' && !line.startsWith('#')).map((line) => {
    const space = line.search(/\s/)
    return space < 0 ? { op: line.toUpperCase(), args: '' } : { op: line.slice(0, space).toUpperCase(), args: line.slice(space).trim() }
  })
}

function envPairs (args: string): Map<string, string> {
  const pairs = new Map<string, string>()
  for (const m of args.matchAll(/([A-Za-z_][A-Za-z0-9_]*)=("[^"]*"|'[^']*'|\S*)/g)) {
    pairs.set(m[1] as string, (m[2] as string).replace(/^["']|["']$/g, ''))
  }
  return pairs
}

/** What the manifests rely on from the image, and the problems found on the way. */
function checkDockerfile (text: string): { problems: string[], defaults: ImageDefaults } {
  const problems: string[] = []
  const all = dockerInstructions(text)
  const firstFrom = all.findIndex((i) => i.op === 'FROM')
  const lastFrom = all.map((i) => i.op).lastIndexOf('FROM')
  if (firstFrom < 0) return { problems: ['Dockerfile: no FROM'], defaults: { host: '', port: 0, uid: -1 } }
  if (!all.slice(0, firstFrom).some((i) => i.op === 'ARG' && /^BASE_IMAGE=\S+/.test(i.args))) {
    problems.push('Dockerfile: the base image is not a build argument (ARG BASE_IMAGE=… before the first FROM)')
  }
  if (lastFrom === firstFrom) problems.push('Dockerfile: not multi-stage')
  const final = all.slice(lastFrom)
  if (!/^\$\{?BASE_IMAGE\}?(\s|$)/.test(final[0]?.args ?? '')) problems.push('Dockerfile: the final stage is not FROM the BASE_IMAGE argument')
  if (final.some((i) => i.op === 'RUN')) problems.push('Dockerfile: the final stage runs commands (the runtime base need not have a shell)')
  const env = new Map<string, string>()
  for (const i of final.filter((i) => i.op === 'ENV')) for (const [k, v] of envPairs(i.args)) env.set(k, v)
  const host = env.get('ECR_PROXY_HOST')
  const port = Number(env.get('ECR_PROXY_PORT'))
  if (host !== '0.0.0.0') problems.push(`Dockerfile: ENV ECR_PROXY_HOST is ${host ?? 'unset'}, not 0.0.0.0`)
  if (!Number.isInteger(port) || port <= 0) problems.push('Dockerfile: no ENV ECR_PROXY_PORT')
  const user = final.filter((i) => i.op === 'USER').at(-1)?.args ?? ''
  const uid = /^(\d+)(:\d+)?$/.exec(user)?.[1]
  if (uid === undefined) problems.push(`Dockerfile: USER ${user || '(none)'} is not a numeric uid[:gid] (runAsNonRoot cannot verify a name)`)
  else if (Number(uid) === 0) problems.push('Dockerfile: USER is root')
  if (!final.some((i) => i.op === 'EXPOSE' && i.args.split(/\s+/).includes(String(port)))) problems.push(`Dockerfile: does not EXPOSE ${port}`)
  const health = final.find((i) => i.op === 'HEALTHCHECK')?.args ?? ''
  if (!/CMD \["node",/.test(health) || !health.includes('/healthz')) problems.push('Dockerfile: HEALTHCHECK does not ask /healthz with node (exec form)')
  const entrypoint = final.find((i) => i.op === 'ENTRYPOINT')?.args
  if (entrypoint !== '["node", "dist/src/cli.js"]') problems.push(`Dockerfile: ENTRYPOINT is ${entrypoint ?? 'unset'}`)
  // Production dependencies only: node_modules comes from a stage that ran npm ci --omit=dev.
  const from = /^COPY\s+--from=(\S+)\s+\S*node_modules/.exec(final.filter((i) => i.op === 'COPY').map((i) => `COPY ${i.args}`).find((c) => c.includes('node_modules')) ?? '')?.[1]
  const stageStart = from === undefined ? -1 : all.findIndex((i) => i.op === 'FROM' && new RegExp(`\\sAS\\s+${from}$`, 'i').test(i.args))
  const stage = stageStart < 0 ? [] : all.slice(stageStart + 1, all.findIndex((i, n) => n > stageStart && i.op === 'FROM'))
  if (!stage.some((i) => i.op === 'RUN' && /npm ci\b.*--omit=dev/.test(i.args))) problems.push('Dockerfile: node_modules does not come from an `npm ci --omit=dev` stage')
  // `docker image prune --filter label=ecr-auth-proxy.stage` (the docs) clears the classic builder's <none> stage images.
  all.forEach((i, n) => {
    if (i.op !== 'FROM') return
    const next = all.findIndex((j, m) => m > n && j.op === 'FROM')
    if (!all.slice(n + 1, next < 0 ? undefined : next).some((j) => j.op === 'LABEL' && /^ecr-auth-proxy\.stage=\S+/.test(j.args))) {
      problems.push(`Dockerfile: the stage FROM ${i.args} has no LABEL ecr-auth-proxy.stage=…`)
    }
  })
  return { problems, defaults: { host: host ?? '', port, uid: uid === undefined ? -1 : Number(uid) } }
}

// --- YAML ------------------------------------------------------------------------------------------

interface Doc { file: string, dir: string, where: string, object: Obj }

/** Plain scalars that YAML 1.1 (kubectl) and 1.2 (this parser) read differently. */
const AMBIGUOUS = /^(?:y|Y|yes|Yes|YES|n|N|no|No|NO|on|On|ON|off|Off|OFF|0[0-7]+|[-+]?\d[\d_]*:[0-5]?\d(?::[0-5]?\d)*)$/

function parseYamlFile (text: string, file: string): { docs: Obj[], problems: string[] } {
  const problems: string[] = []
  const docs: Obj[] = []
  parseAllDocuments(text, { uniqueKeys: true }).forEach((doc, n) => {
    for (const e of [...doc.errors, ...doc.warnings]) problems.push(`${file}#${n}: ${e.message}`)
    visit(doc, {
      Scalar (_key, node) {
        if (node.type === Scalar.PLAIN && AMBIGUOUS.test(node.source ?? '')) {
          problems.push(`${file}#${n}: plain scalar ${String(node.source)} reads differently in YAML 1.1 and 1.2: quote it`)
        }
      }
    })
    const value: unknown = doc.toJS()
    if (value === null || value === undefined) return
    if (!isObj(value)) problems.push(`${file}#${n}: not a mapping`)
    else docs.push(value)
  })
  return { docs, problems }
}

function yamlFiles (dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name)
    if (e.isDirectory()) return yamlFiles(path)
    return /\.ya?ml$/.test(e.name) ? [path] : []
  }).sort()
}

function loadDeploy (): { docs: Doc[], problems: string[], files: string[] } {
  const files = yamlFiles(DEPLOY).map((f) => relative(ROOT, f))
  const docs: Doc[] = []
  const problems: string[] = []
  for (const file of files) {
    const parsed = parseYamlFile(readFileSync(join(ROOT, file), 'utf8'), file)
    problems.push(...parsed.problems)
    parsed.docs.forEach((object, n) => {
      const name = str(obj(object.metadata).name) ?? '?'
      docs.push({ file, dir: file.split('/').slice(0, -1).join('/'), where: `${file} ${str(object.kind) ?? '?'}/${name}${parsed.docs.length > 1 ? ` (#${n})` : ''}`, object })
    })
  }
  return { docs, problems, files }
}

/** A kustomization lists exactly the other YAML files of its directory. */
function checkKustomization (doc: Doc, filesInDir: string[]): string[] {
  const problems = unknownFields(doc.object, shape(fields('apiVersion', 'kind', 'resources', 'namespace', 'labels')), doc.where)
  const listed = arr(doc.object.resources).map((r) => `${doc.dir}/${String(r)}`).sort()
  const present = filesInDir.filter((f) => f !== doc.file).sort()
  for (const f of listed) if (!present.includes(f)) problems.push(`${doc.where}: lists ${f}, which is not there`)
  for (const f of present) if (!listed.includes(f)) problems.push(`${doc.where}: does not list ${f}`)
  return problems
}

// --- workloads -----------------------------------------------------------------------------------

interface Workload { doc: Doc, kind: string, podSpec: Obj, podLabels: Obj }

function workloadOf (doc: Doc): Workload | undefined {
  const kind = str(doc.object.kind) ?? ''
  const spec = obj(doc.object.spec)
  if (kind === 'Pod') return { doc, kind, podSpec: spec, podLabels: obj(obj(doc.object.metadata).labels) }
  if (['Deployment', 'DaemonSet', 'Job', 'StatefulSet', 'ReplicaSet'].includes(kind)) {
    const template = obj(spec.template)
    return { doc, kind, podSpec: obj(template.spec), podLabels: obj(obj(template.metadata).labels) }
  }
  return undefined
}

const PROXY_IMAGE = /(?:^|\/)ecr-auth-proxy(?::|@)/
/** The proxy's image running `client-config` (it writes files and exits): not a proxy. */
const isClientConfig = (c: Obj): boolean => PROXY_IMAGE.test(str(c.image) ?? '') && arr(c.args)[0] === 'client-config'
/**
 * The proxy's image as the init container that chowns the node's cache directory: not a proxy.
 * Known by its name; checkCacheOwner then holds it to exactly that one command.
 */
const CACHE_OWNER = 'cache-owner'
const isCacheOwner = (c: Obj): boolean => PROXY_IMAGE.test(str(c.image) ?? '') && c.name === CACHE_OWNER
const isProxy = (c: Obj): boolean => PROXY_IMAGE.test(str(c.image) ?? '') && !isClientConfig(c) && !isCacheOwner(c)
/** The DaemonSet's cache on the node, and where cache-owner mounts it. */
const CACHE_HOST_DIR = '/var/cache/ecr-auth-proxy'
const CACHE_OWNER_MOUNT = '/cache'
/** What cache-owner runs: node (the image promises nothing else), one chown, not recursive. */
const cacheOwnerCommand = (uid: number): string[] => ['node', '-e', `require('node:fs').chownSync('${CACHE_OWNER_MOUNT}', ${uid}, ${uid})`]
const containersOf = (podSpec: Obj): Obj[] => [...arr(podSpec.initContainers), ...arr(podSpec.containers)].map(obj)
const proxiesOf = (w: Workload): Obj[] => containersOf(w.podSpec).filter(isProxy)
const isLoopback = (host: string): boolean => /^(?:127\.\d+\.\d+\.\d+|::1|\[::1\]|localhost)$/.test(host)

/** A proxy setting as the CLI resolves it: flag > environment > the image's default. */
function setting (c: Obj, flag: string, fallback?: string): string | undefined {
  const args = arr(c.args).map(String)
  for (let i = 0; i < args.length; i++) {
    const a = args[i] as string
    if (a === `--${flag}`) {
      const next = args[i + 1]
      return next === undefined || next.startsWith('--') ? 'true' : next
    }
    if (a.startsWith(`--${flag}=`)) return a.slice(flag.length + 3)
  }
  const name = `ECR_PROXY_${flag.replace(/-/g, '_').toUpperCase()}`
  const env = arr(c.env).map(obj).find((e) => e.name === name)
  if (env !== undefined) return str(env.value) ?? (env.valueFrom === undefined ? '' : '<valueFrom>')
  return fallback
}

const QUANTITY_SUFFIX: Record<string, number> = { '': 1, m: 1e-3, k: 1e3, M: 1e6, G: 1e9, T: 1e12, Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40 }
function quantity (v: unknown): number | undefined {
  const m = /^(\d+(?:\.\d+)?)(m|k|M|G|T|Ki|Mi|Gi|Ti)?$/.exec(typeof v === 'number' ? String(v) : str(v) ?? '')
  const factor = QUANTITY_SUFFIX[m?.[2] ?? '']
  return m === null || factor === undefined ? undefined : Number(m[1]) * factor
}

interface ProbeTarget { via: 'httpGet' | 'exec', scheme: string, path: string, port: number, host?: string }

function probeTarget (probe: Obj, c: Obj): ProbeTarget | string {
  if (isObj(probe.httpGet)) {
    const h = probe.httpGet
    const named = arr(c.ports).map(obj).find((p) => p.name === h.port)
    const port = typeof h.port === 'number' ? h.port : num(named?.containerPort)
    if (port === undefined) return `port ${String(h.port)} is not a container port`
    const host = str(h.host)
    return { via: 'httpGet', scheme: str(h.scheme) ?? 'HTTP', path: str(h.path) ?? '/', port, ...(host === undefined ? {} : { host }) }
  }
  if (isObj(probe.exec)) {
    const command = arr(probe.exec.command).map(String)
    // The image has node and nothing else: no shell, no curl, no wget.
    if (command[0] !== 'node') return `exec probe runs ${command[0] ?? 'nothing'}, but the image only has node`
    const m = /(https?):\/\/(127\.0\.0\.1|localhost|\[::1\]):(\d+)(\/[a-z]*)/.exec(command.join(' '))
    if (m === null) return 'exec probe asks no http(s)://<loopback>:<port>/… URL'
    return { via: 'exec', scheme: (m[1] as string).toUpperCase(), path: m[4] as string, port: Number(m[3]), host: m[2] as string }
  }
  return 'neither httpGet nor exec'
}

const env = (c: Obj): Obj[] => arr(c.env).map(obj)

/**
 * Hardening every container gets, proxy or not. `rootAllowed`: the client-config writer, whose
 * target directory on the node is root's, and cache-owner; they keep every other rule.
 * `capsAllowed`: the capabilities it may add back (cache-owner: CHOWN; everyone else: none).
 */
function checkHardening (c: Obj, podSpec: Obj, where: string, rootAllowed = false, capsAllowed: readonly string[] = []): string[] {
  const problems: string[] = []
  const sc = obj(c.securityContext)
  const psc = obj(podSpec.securityContext)
  const eff = (key: string): unknown => sc[key] ?? psc[key]
  if (sc.readOnlyRootFilesystem !== true) problems.push(`${where}: readOnlyRootFilesystem is not true`)
  if (sc.allowPrivilegeEscalation !== false) problems.push(`${where}: allowPrivilegeEscalation is not false`)
  if (sc.privileged === true) problems.push(`${where}: privileged`)
  const caps = obj(sc.capabilities)
  if (!arr(caps.drop).includes('ALL')) problems.push(`${where}: capabilities do not drop ALL`)
  const extra = arr(caps.add).filter((cap) => !capsAllowed.includes(String(cap)))
  if (extra.length > 0) problems.push(`${where}: adds capabilities ${JSON.stringify(extra)}`)
  if (!rootAllowed && eff('runAsNonRoot') !== true) problems.push(`${where}: runAsNonRoot is not true`)
  if (!rootAllowed && eff('runAsUser') === 0) problems.push(`${where}: runAsUser 0`)
  if (obj(eff('seccompProfile')).type !== 'RuntimeDefault') problems.push(`${where}: seccompProfile is not RuntimeDefault`)
  const image = str(c.image) ?? ''
  if (!/[:@][^/]+$/.test(image) || image.endsWith(':latest')) problems.push(`${where}: image ${image} is not pinned to a tag or digest`)
  return problems
}

type Expectation = 'loopback' | 'client-auth'

function checkProxy (w: Workload, c: Obj, image: ImageDefaults, expect: Expectation | undefined): string[] {
  const where = `${w.doc.where} container ${str(c.name) ?? '?'}`
  const problems: string[] = []
  const hostNetwork = w.podSpec.hostNetwork === true
  if (c.command !== undefined) problems.push(`${where}: overrides the image's entrypoint`)

  // Listening: loopback, or client authentication from a Secret. Never the risk flag.
  const host = setting(c, 'host', image.host) ?? ''
  const port = Number(setting(c, 'port', String(image.port)))
  const loopback = isLoopback(host)
  const allowUnauthenticated = setting(c, 'allow-unauthenticated')
  if (allowUnauthenticated !== undefined && allowUnauthenticated !== 'false') {
    problems.push(`${where}: sets allow-unauthenticated (${allowUnauthenticated}); use loopback or client authentication`)
  }
  // Client authentication: an htpasswd or bearer-token file from a Secret volume, or bearer
  // tokens in the environment from a Secret.
  const files = ['htpasswd', 'bearer-tokens-file'].flatMap((flag) => {
    const path = setting(c, flag)
    return path === undefined || path === '' ? [] : [{ flag, path }]
  })
  const tokens = env(c).find((e) => e.name === 'ECR_PROXY_BEARER_TOKENS')
  if (tokens !== undefined && !isObj(obj(tokens.valueFrom).secretKeyRef)) {
    problems.push(`${where}: ECR_PROXY_BEARER_TOKENS is written into the manifest; take it from a Secret (valueFrom.secretKeyRef)`)
  }
  if (!loopback && files.length === 0 && tokens === undefined) {
    problems.push(`${where}: listens on ${host} without client authentication (ECR_PROXY_HTPASSWD, ECR_PROXY_BEARER_TOKENS_FILE or ECR_PROXY_BEARER_TOKENS)`)
  }
  for (const { flag, path } of files) {
    const volumes = arr(w.podSpec.volumes).map(obj)
    const mount = arr(c.volumeMounts).map(obj).find((m) => {
      const mountPath = str(m.mountPath) ?? ''
      return path === mountPath || path.startsWith(mountPath.endsWith('/') ? mountPath : `${mountPath}/`)
    })
    const volume = volumes.find((v) => v.name === mount?.name)
    if (mount === undefined || !isObj(volume?.secret) || str(volume.secret.secretName) === undefined) {
      problems.push(`${where}: ${flag} ${path} is not on a volume from a Secret`)
    } else if (mount.readOnly !== true) {
      problems.push(`${where}: the ${flag} volume is not mounted readOnly`)
    } else if (mount.subPath !== undefined) {
      problems.push(`${where}: the ${flag} volume is mounted with subPath (Secret updates would never reach the proxy)`)
    }
    const mode = num(obj(volume?.secret).defaultMode)
    if (mode !== undefined && (mode > 0o777 || (mode & 0o007) !== 0)) problems.push(`${where}: ${flag} Secret mode ${mode.toString(8)} is invalid or world-readable`)
  }
  if (expect === 'loopback' && !loopback) problems.push(`${where}: must listen on loopback, listens on ${host}`)
  if (expect === 'client-auth' && loopback) problems.push(`${where}: a shared proxy on ${host} is unreachable through its Service`)
  if (!arr(c.ports).map(obj).some((p) => p.containerPort === port)) problems.push(`${where}: no containerPort ${port} (the port it listens on)`)
  if (hostNetwork && arr(c.ports).map(obj).some((p) => p.hostPort !== undefined && p.hostPort !== p.containerPort)) {
    problems.push(`${where}: hostNetwork needs hostPort = containerPort`)
  }

  // Probes: the right path, port and scheme, and a way to reach the listener.
  const scheme = (setting(c, 'tls-cert') ?? '') === '' ? 'HTTP' : 'HTTPS'
  const probes: Array<[string, string[]]> = [['livenessProbe', ['/healthz']], ['readinessProbe', ['/readyz']], ['startupProbe', ['/healthz', '/readyz']]]
  for (const [name, paths] of probes) {
    if (c[name] === undefined) {
      if (name !== 'startupProbe') problems.push(`${where}: no ${name}`)
      continue
    }
    const target = probeTarget(obj(c[name]), c)
    if (typeof target === 'string') {
      problems.push(`${where}: ${name}: ${target}`)
      continue
    }
    if (!paths.includes(target.path)) problems.push(`${where}: ${name} asks ${target.path}, not ${paths.join(' or ')}`)
    if (target.port !== port) problems.push(`${where}: ${name} asks port ${target.port}, the proxy listens on ${port}`)
    if (target.scheme !== scheme) problems.push(`${where}: ${name} uses ${target.scheme}, the proxy serves ${scheme}`)
    if (target.via === 'httpGet') {
      // The kubelet dials from the node: the pod IP unless host is set, and 127.0.0.1 is the
      // node's own loopback — the pod's only with hostNetwork.
      if (loopback && !hostNetwork) problems.push(`${where}: ${name} is httpGet, but the kubelet cannot reach the pod's loopback (use exec with node)`)
      if (loopback && hostNetwork && target.host !== '127.0.0.1') problems.push(`${where}: ${name} must set host: 127.0.0.1 (hostNetwork, loopback listener)`)
      if (!loopback && target.host !== undefined) problems.push(`${where}: ${name} sets host ${target.host}`)
    }
  }

  // Resources.
  const resources = obj(c.resources)
  for (const r of ['cpu', 'memory']) {
    const request = quantity(obj(resources.requests)[r])
    const limit = quantity(obj(resources.limits)[r])
    if (request === undefined) problems.push(`${where}: no ${r} request`)
    if (limit === undefined) problems.push(`${where}: no ${r} limit`)
    if (request !== undefined && limit !== undefined && limit < request) problems.push(`${where}: ${r} limit below its request`)
  }

  // The image's user, and a writable /tmp beside the read-only root.
  const runAsUser = obj(c.securityContext).runAsUser ?? obj(w.podSpec.securityContext).runAsUser
  if (runAsUser !== image.uid) problems.push(`${where}: runAsUser ${String(runAsUser)} is not the image's user ${image.uid}`)
  if (!arr(c.volumeMounts).map(obj).some((m) => m.mountPath === '/tmp')) problems.push(`${where}: no writable /tmp`)

  // The layer cache: its own writable volume; an emptyDir's sizeLimit above --cache-max-size with
  // a tenth to spare (metadata files, block rounding), or the kubelet evicts the pod.
  const cacheDir = setting(c, 'cache-dir')
  if (cacheDir !== undefined) {
    const mount = arr(c.volumeMounts).map(obj).find((m) => m.mountPath === cacheDir)
    const volume = arr(w.podSpec.volumes).map(obj).find((v) => v.name === mount?.name)
    const maxSize = parseSize(setting(c, 'cache-max-size', '20GiB') ?? '')
    if (mount === undefined || volume === undefined) problems.push(`${where}: --cache-dir ${cacheDir} is not a volume mount (the root is read-only)`)
    else if (mount.readOnly === true) problems.push(`${where}: --cache-dir ${cacheDir} is mounted read-only`)
    else if (isObj(volume.emptyDir)) {
      const limit = quantity(volume.emptyDir.sizeLimit)
      if (limit === undefined || maxSize === undefined || limit < maxSize * 1.1) problems.push(`${where}: the cache's emptyDir sizeLimit ${String(volume.emptyDir.sizeLimit)} does not exceed --cache-max-size ${String(maxSize)} bytes by 10%`)
    } else if (!isObj(volume.hostPath)) problems.push(`${where}: --cache-dir ${cacheDir} is on neither an emptyDir nor the node's disk`)
    else {
      // The node's disk: a directory the kubelet creates root-owned, so an init container must
      // hand it to the proxy's uid first (fsGroup does not apply to hostPath).
      const path = str(volume.hostPath.path)
      if (path !== CACHE_HOST_DIR) problems.push(`${where}: the cache's hostPath ${String(path)} is not ${CACHE_HOST_DIR}`)
      else if (str(volume.hostPath.type) !== 'DirectoryOrCreate') problems.push(`${where}: the cache's hostPath ${CACHE_HOST_DIR} is not of type DirectoryOrCreate`)
      const owners = arr(w.podSpec.initContainers).map(obj).filter(isCacheOwner)
      if (!owners.some((o) => arr(o.volumeMounts).map(obj).some((m) => m.name === volume.name))) problems.push(`${where}: the hostPath cache ${String(path)} is root-owned, and no ${CACHE_OWNER} init container chowns it to uid ${image.uid}`)
    }
  }

  // Shutdown: the pod's grace period covers preStop plus the proxy's own drain time.
  const drain = Number(setting(c, 'shutdown-grace-seconds', '30'))
  const preStop = num(obj(obj(obj(c.lifecycle).preStop).sleep).seconds) ?? 0
  const grace = num(w.podSpec.terminationGracePeriodSeconds) ?? 30
  if (grace <= drain + preStop) problems.push(`${where}: terminationGracePeriodSeconds ${grace} does not exceed preStop ${preStop} s + shutdownGraceSeconds ${drain}`)

  // A native sidecar must keep running, and the others start only once it is ready.
  if (arr(w.podSpec.initContainers).includes(c)) {
    if (c.restartPolicy !== 'Always') problems.push(`${where}: an init container without restartPolicy: Always would block the pod`)
    if (c.startupProbe === undefined) problems.push(`${where}: a sidecar without startupProbe lets the other containers start before it listens`)
  }
  return problems
}

/** The registry a proxy container serves, from --registry-id and --region (or their env vars). */
function proxyRegistryHost (c: Obj): string | undefined {
  const id = setting(c, 'registry-id')
  const region = setting(c, 'region')
  if (id === undefined || region === undefined) return undefined
  return `${id}.dkr.ecr.${region}.amazonaws.com${region.startsWith('cn-') ? '.cn' : ''}`
}

/**
 * The init container that writes `<registry>/hosts.toml` into the node's containerd directory:
 * once per pod start, for the registries its proxy serves, pointing at that proxy, through a
 * hostPath of exactly /etc/containerd/certs.d.
 */
function checkClientConfig (w: Workload, c: Obj, image: ImageDefaults): string[] {
  const where = `${w.doc.where} container ${str(c.name) ?? '?'}`
  const problems: string[] = []
  if (!arr(w.podSpec.initContainers).includes(c)) problems.push(`${where}: client-config must be an init container (it writes the files and exits)`)
  else if (c.restartPolicy !== undefined) problems.push(`${where}: client-config must run once, not as a sidecar (restartPolicy ${String(c.restartPolicy)})`)
  if (c.command !== undefined) problems.push(`${where}: overrides the image's entrypoint`)
  const args = arr(c.args).map(String)
  if (args[1] !== 'containerd') return [...problems, `${where}: client-config ${args[1] ?? ''} writes no containerd hosts files`]
  const registries: string[] = []
  const options = new Map<string, string>()
  for (let i = 2; i < args.length; i += 2) {
    const [flag, value] = [args[i] as string, args[i + 1]]
    if (!['--registry', '--proxy', '--dir'].includes(flag) || value === undefined) {
      problems.push(`${where}: unexpected client-config argument ${flag}${flag === '--server' ? ' (tests only: it replaces every registry\'s own fallback)' : ''}`)
      continue
    }
    if (flag === '--registry') registries.push(value)
    else options.set(flag, value)
  }
  for (const r of registries) {
    try {
      parseRegistryHost(r)
    } catch (err) {
      if (!(err instanceof ClientConfigUsageError)) throw err
      problems.push(`${where}: ${err.message}`)
    }
  }
  // It must name the registry each proxy in the pod serves, and point at where that proxy listens.
  const proxies = containersOf(w.podSpec).filter(isProxy)
  for (const p of proxies) {
    const served = proxyRegistryHost(p)
    if (served !== undefined && !registries.includes(served)) problems.push(`${where}: does not list ${served}, the registry its proxy serves`)
  }
  const proxy = options.get('--proxy') ?? 'http://127.0.0.1:5000'
  const listens = proxies.map((p) => {
    const scheme = (setting(p, 'tls-cert') ?? '') === '' ? 'http' : 'https'
    return parseOriginUrl(`${scheme}://${setting(p, 'host', image.host) ?? ''}:${setting(p, 'port', String(image.port)) ?? ''}`, 'proxy')
  })
  if (!listens.includes(proxy)) problems.push(`${where}: --proxy ${proxy} is not where the pod's proxy listens (${listens.join(', ') || 'no proxy'})`)
  if (w.podSpec.hostNetwork !== true) problems.push(`${where}: without hostNetwork the node's containerd cannot reach the proxy on the pod's loopback`)

  const dir = options.get('--dir')
  const mount = arr(c.volumeMounts).map(obj).find((m) => m.mountPath === dir)
  const volume = arr(w.podSpec.volumes).map(obj).find((v) => v.name === mount?.name)
  const hostPath = obj(volume?.hostPath)
  if (dir === undefined) problems.push(`${where}: no --dir: it would only print the files`)
  else if (mount === undefined) problems.push(`${where}: --dir ${dir} is not a volume mount`)
  else if (str(hostPath.path) !== CONTAINERD_CERTS_DIR) problems.push(`${where}: --dir ${dir} is not the node's ${CONTAINERD_CERTS_DIR}`)
  else if (!['Directory', 'DirectoryOrCreate'].includes(str(hostPath.type) ?? '')) problems.push(`${where}: the hostPath ${CONTAINERD_CERTS_DIR} is not of type Directory or DirectoryOrCreate`)
  else if (mount.readOnly === true) problems.push(`${where}: --dir ${dir} is mounted read-only`)
  return problems
}

/**
 * The init container that hands the node's cache directory to the proxy's uid: uid 0 with CHOWN
 * as its one capability, the proxy's own image, one non-recursive chown of one mount, once.
 */
function checkCacheOwner (w: Workload, c: Obj, image: ImageDefaults): string[] {
  const where = `${w.doc.where} container ${str(c.name) ?? '?'}`
  const problems: string[] = []
  if (!arr(w.podSpec.initContainers).includes(c)) problems.push(`${where}: ${CACHE_OWNER} must be an init container (it runs before the proxy and exits)`)
  else if (c.restartPolicy !== undefined) problems.push(`${where}: ${CACHE_OWNER} must run once, not as a sidecar (restartPolicy ${String(c.restartPolicy)})`)
  const images = new Set(containersOf(w.podSpec).filter(isProxy).map((p) => str(p.image)))
  if (!images.has(str(c.image))) problems.push(`${where}: image ${str(c.image) ?? '?'} is not the proxy's image`)
  const expected = cacheOwnerCommand(image.uid)
  const command = arr(c.command).map(String)
  if (c.args !== undefined || JSON.stringify(command) !== JSON.stringify(expected)) problems.push(`${where}: runs ${JSON.stringify([...command, ...arr(c.args)])}, not ${JSON.stringify(expected)} (the chown to uid ${image.uid} and nothing else)`)
  const sc = obj(c.securityContext)
  if (sc.runAsUser !== 0) problems.push(`${where}: runAsUser ${String(sc.runAsUser)}: only uid 0 may chown a root-owned directory`)
  const mounts = arr(c.volumeMounts).map(obj)
  const volume = arr(w.podSpec.volumes).map(obj).find((v) => v.name === mounts[0]?.name)
  if (mounts.length !== 1 || mounts[0]?.mountPath !== CACHE_OWNER_MOUNT) problems.push(`${where}: mounts ${JSON.stringify(mounts.map((m) => m.mountPath))}, not ${CACHE_OWNER_MOUNT} alone`)
  else if (str(obj(volume?.hostPath).path) !== CACHE_HOST_DIR) problems.push(`${where}: ${CACHE_OWNER_MOUNT} is not the node's ${CACHE_HOST_DIR}`)
  else if (mounts[0].readOnly === true) problems.push(`${where}: ${CACHE_OWNER_MOUNT} is mounted read-only`)
  return problems
}

function checkWorkload (w: Workload, image: ImageDefaults, expect: Expectation | undefined): string[] {
  const problems: string[] = []
  for (const c of containersOf(w.podSpec)) {
    const where = `${w.doc.where} container ${str(c.name) ?? '?'}`
    problems.push(...checkHardening(c, w.podSpec, where, isClientConfig(c) || isCacheOwner(c), isCacheOwner(c) ? ['CHOWN'] : []))
    if (isProxy(c)) problems.push(...checkProxy(w, c, image, expect))
    if (isClientConfig(c)) problems.push(...checkClientConfig(w, c, image))
    if (isCacheOwner(c)) problems.push(...checkCacheOwner(w, c, image))
  }
  if (w.podSpec.hostPID === true || w.podSpec.hostIPC === true) problems.push(`${w.doc.where}: hostPID/hostIPC`)
  // The hostPaths allowed: the node's containerd hosts directory, for client-config only; the
  // node's cache directory, for cache-owner and the proxy that has its --cache-dir there.
  for (const v of arr(w.podSpec.volumes).map(obj).filter((v) => v.hostPath !== undefined)) {
    const path = str(obj(v.hostPath).path) ?? '?'
    const mountsOf = (c: Obj): Obj[] => arr(c.volumeMounts).map(obj).filter((m) => m.name === v.name)
    const users = containersOf(w.podSpec).filter((c) => mountsOf(c).length > 0)
    const allowed = path === CONTAINERD_CERTS_DIR
      ? isClientConfig
      : path === CACHE_HOST_DIR
        ? (c: Obj): boolean => isCacheOwner(c) || (isProxy(c) && mountsOf(c).every((m) => m.mountPath === setting(c, 'cache-dir')))
        : undefined
    if (allowed === undefined) problems.push(`${w.doc.where}: hostPath volume ${String(v.name)} (${path})`)
    for (const c of users.filter((c) => allowed === undefined || !allowed(c))) problems.push(`${w.doc.where}: container ${str(c.name) ?? '?'} mounts the hostPath volume ${String(v.name)} (${path})`)
  }
  return problems
}

const matches = (selector: Obj, labels: Obj): boolean =>
  Object.keys(selector).length > 0 && Object.entries(selector).every(([k, v]) => labels[k] === v)

/** Services, ServiceAccounts and selectors of one directory point at what is there. */
function checkReferences (docs: Doc[]): string[] {
  const problems: string[] = []
  const workloads = docs.map(workloadOf).filter((w): w is Workload => w !== undefined)
  const accounts = new Map(docs.filter((d) => d.object.kind === 'ServiceAccount').map((d) => [str(obj(d.object.metadata).name), d]))
  for (const w of workloads.filter((w) => proxiesOf(w).length > 0)) {
    const name = str(w.podSpec.serviceAccountName)
    const account = accounts.get(name)
    if (name === undefined || account === undefined) {
      problems.push(`${w.doc.where}: serviceAccountName ${name ?? '(none)'} is not defined beside it`)
      continue
    }
    const role = str(obj(obj(account.object.metadata).annotations)['eks.amazonaws.com/role-arn'])
    if (role === undefined || !/^arn:aws(?:-cn|-us-gov)?:iam::\d{12}:role\/[\w+=,.@/-]+$/.test(role)) {
      problems.push(`${account.where}: no IRSA annotation eks.amazonaws.com/role-arn with a role ARN`)
    }
    const ns = str(obj(w.doc.object.metadata).namespace)
    if (ns !== str(obj(account.object.metadata).namespace)) problems.push(`${w.doc.where}: ServiceAccount ${name} is in another namespace`)
  }
  for (const d of docs.filter((d) => d.object.kind === 'Service')) {
    const spec = obj(d.object.spec)
    const targets = workloads.filter((w) => matches(obj(spec.selector), w.podLabels))
    const proxies = targets.flatMap(proxiesOf)
    if (proxies.length === 0) {
      problems.push(`${d.where}: selector matches no proxy pod`)
      continue
    }
    if (spec.type !== undefined && spec.type !== 'ClusterIP') problems.push(`${d.where}: type ${String(spec.type)} exposes the proxy beyond the cluster`)
    for (const p of arr(spec.ports).map(obj)) {
      const target = p.targetPort ?? p.port
      for (const c of proxies) {
        const port = arr(c.ports).map(obj).find((cp) => cp.name === target || cp.containerPort === target)
        const listen = Number(setting(c, 'port', '5000'))
        if (port === undefined || port.containerPort !== listen) problems.push(`${d.where}: targetPort ${String(target)} is not the proxy's port ${listen}`)
      }
    }
  }
  for (const d of docs.filter((d) => ['PodDisruptionBudget', 'NetworkPolicy'].includes(str(d.object.kind) ?? ''))) {
    const spec = obj(d.object.spec)
    const selector = obj(obj(spec.selector ?? spec.podSelector).matchLabels)
    if (!workloads.some((w) => matches(selector, w.podLabels))) problems.push(`${d.where}: selector matches no pod here`)
  }
  return problems
}

// --- docker-compose.yml --------------------------------------------------------------------------

const COMPOSE_TOP = new Set(['version', 'name', 'services', 'networks', 'volumes', 'configs', 'secrets', 'include', 'models'])
const COMPOSE_SERVICE = new Set(('annotations attach blkio_config build cap_add cap_drop cgroup cgroup_parent command configs ' +
  'container_name cpu_count cpu_percent cpu_period cpu_quota cpu_rt_period cpu_rt_runtime cpu_shares cpus cpuset ' +
  'credential_spec depends_on deploy develop device_cgroup_rules devices dns dns_opt dns_search domainname entrypoint ' +
  'env_file environment expose extends external_links extra_hosts gpus group_add healthcheck hostname image init ipc ' +
  'isolation labels label_file links logging mac_address mem_limit mem_reservation mem_swappiness memswap_limit models ' +
  'network_mode networks oom_kill_disable oom_score_adj pid pids_limit platform ports post_start pre_stop privileged ' +
  'profiles provider pull_policy read_only restart runtime scale secrets security_opt shm_size stdin_open ' +
  'stop_grace_period stop_signal storage_opt sysctls tmpfs tty ulimits use_api_socket user userns_mode uts volumes ' +
  'volumes_from working_dir').split(' '))

function composeEnv (service: Obj): Map<string, string | undefined> {
  const env = new Map<string, string | undefined>()
  if (Array.isArray(service.environment)) {
    for (const entry of service.environment.map(String)) {
      const eq = entry.indexOf('=')
      env.set(eq < 0 ? entry : entry.slice(0, eq), eq < 0 ? undefined : entry.slice(eq + 1))
    }
  } else {
    for (const [k, v] of Object.entries(obj(service.environment))) env.set(k, v === null ? undefined : String(v))
  }
  return env
}

const seconds = (v: unknown): number => {
  const m = /^(?:(\d+)m)?(?:(\d+)s)?$/.exec(str(v) ?? '')
  return m === null ? NaN : Number(m[1] ?? 0) * 60 + Number(m[2] ?? 0)
}

function checkCompose (doc: unknown, image: ImageDefaults): string[] {
  const problems: string[] = []
  const top = obj(doc)
  for (const k of Object.keys(top)) if (!COMPOSE_TOP.has(k) && !k.startsWith('x-')) problems.push(`compose: unknown top-level key ${k}`)
  if ('name' in top) problems.push('compose: a top-level name, which docker-compose 1.29 (Debian 12) rejects')
  const service = obj(obj(top.services)['ecr-auth-proxy'])
  if (Object.keys(service).length === 0) return [...problems, 'compose: no service ecr-auth-proxy']
  for (const k of Object.keys(service)) if (!COMPOSE_SERVICE.has(k) && !k.startsWith('x-')) problems.push(`compose: unknown service key ${k}`)
  const env = composeEnv(service)
  const port = Number(env.get('ECR_PROXY_PORT') ?? image.port)
  if (service.network_mode === 'host') problems.push('compose: network_mode host (the proxy would listen on every host address)')
  const ports = arr(service.ports)
  if (ports.length === 0) problems.push('compose: no published port')
  for (const p of ports) {
    const long = obj(p)
    const hostIp = isObj(p) ? str(long.host_ip) : /^(?:(\[[^\]]+\]|[\d.]+):)?(?:\$\{[^}]+\}|\d+)?:?(\d+)(?:\/tcp)?$/.exec(String(p))?.[1]
    const target = isObj(p) ? num(long.target) : Number(/(\d+)(?:\/tcp)?$/.exec(String(p))?.[1])
    if (hostIp === undefined || !isLoopback(hostIp)) problems.push(`compose: port ${JSON.stringify(p)} is not published on loopback only`)
    if (target !== port) problems.push(`compose: port ${JSON.stringify(p)} does not reach the proxy's port ${port}`)
  }
  if (env.has('ECR_PROXY_HOST') && env.get('ECR_PROXY_HOST') !== image.host) problems.push('compose: changes the listen host (the published port needs 0.0.0.0 inside)')
  const auth = ['ECR_PROXY_HTPASSWD', 'ECR_PROXY_BEARER_TOKENS_FILE', 'ECR_PROXY_BEARER_TOKENS'].some((k) => (env.get(k) ?? '') !== '')
  if (env.get('ECR_PROXY_ALLOW_UNAUTHENTICATED') !== 'true' && !auth) {
    problems.push('compose: neither client authentication nor ECR_PROXY_ALLOW_UNAUTHENTICATED: the proxy would refuse to start')
  }
  if (service.read_only !== true) problems.push('compose: read_only is not true')
  if (!arr(service.tmpfs).some((m) => String(m).split(':')[0] === '/tmp')) problems.push('compose: no tmpfs /tmp')
  if (!arr(service.cap_drop).includes('ALL')) problems.push('compose: cap_drop does not include ALL')
  if (!arr(service.security_opt).some((o) => /^no-new-privileges(?::true)?$/.test(String(o)))) problems.push('compose: no-new-privileges not set')
  const user = str(service.user) ?? ''
  if (user === '' || /^(?:0|root)(?::|$)/.test(user)) problems.push(`compose: user ${user || '(image default)'} is not an explicit non-root user`)
  const test = arr(obj(service.healthcheck).test).map(String)
  if (test[0] !== 'CMD' || test[1] !== 'node' || !test.join(' ').includes(`127.0.0.1:${port}/healthz`)) problems.push('compose: healthcheck does not ask /healthz with node')
  if (!['always', 'unless-stopped', 'on-failure'].includes(String(service.restart).replace(/:\d+$/, ''))) problems.push('compose: no restart policy')
  const drain = Number(env.get('ECR_PROXY_SHUTDOWN_GRACE_SECONDS') ?? 30)
  if (!(seconds(service.stop_grace_period) > drain)) problems.push(`compose: stop_grace_period ${String(service.stop_grace_period)} does not exceed shutdownGraceSeconds ${drain}`)
  for (const v of arr(service.volumes)) {
    const text = isObj(v) ? `${String(v.source)}:${String(v.target)}` : String(v)
    const readOnly = isObj(v) ? v.read_only === true : /:ro(?:,|$)/.test(String(v))
    if (text.includes('.aws') && !readOnly) problems.push(`compose: ${text} is not mounted read-only`)
  }
  return problems
}

// --- the real files ------------------------------------------------------------------------------

const EXPECTATIONS: Record<string, Expectation> = {
  'deploy/sidecar': 'loopback',
  'deploy/daemonset': 'loopback',
  'deploy/shared': 'client-auth'
}

const dockerfile = checkDockerfile(readFileSync(join(ROOT, 'Dockerfile'), 'utf8'))
const image = dockerfile.defaults
const deploy = loadDeploy()

function checkDirectory (dir: string, docs: Doc[]): string[] {
  const problems: string[] = []
  const inDir = docs.filter((d) => d.dir === dir)
  for (const d of inDir) problems.push(...checkObject(d.object, d.where))
  for (const d of inDir.filter((d) => `${str(d.object.apiVersion) ?? ''}/${str(d.object.kind) ?? ''}` === KUSTOMIZATION)) {
    problems.push(...checkKustomization(d, deploy.files.filter((f) => f.split('/').slice(0, -1).join('/') === dir)))
  }
  for (const d of inDir) {
    const w = workloadOf(d)
    if (w !== undefined) problems.push(...checkWorkload(w, image, EXPECTATIONS[dir]))
  }
  problems.push(...checkReferences(inDir))
  return problems
}

const directories = [...new Set(deploy.docs.map((d) => d.dir))].sort()
const proxyWorkloads = (dir: string): Workload[] =>
  deploy.docs.filter((d) => d.dir === dir).map(workloadOf).filter((w): w is Workload => w !== undefined && proxiesOf(w).length > 0)

t.test('Dockerfile: the final stage is what the manifests assume', async (t) => {
  t.same(dockerfile.problems, [])
  t.equal(image.host, '0.0.0.0')
  t.equal(image.port, 5000)
  t.equal(image.uid, 1000)
  const ignore = readFileSync(join(ROOT, '.dockerignore'), 'utf8').split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'))
  t.equal(ignore[0], '*', '.dockerignore is an allow-list (no .git, node_modules, dist or credentials in the context)')
  for (const needed of ['package.json', 'package-lock.json', 'tsconfig.json', 'tsconfig.build.json', 'src/']) t.ok(ignore.includes(`!${needed}`), `context includes ${needed}`)
})

t.test('deploy/: every YAML file parses, unambiguously', async (t) => {
  t.ok(deploy.files.length >= 10, `${deploy.files.length} YAML files`)
  t.same(deploy.problems, [])
})

t.test('deploy/: sidecar, shared and daemonset, each with a proxy workload', async (t) => {
  t.same(directories, Object.keys(EXPECTATIONS).sort())
  for (const dir of Object.keys(EXPECTATIONS)) t.ok(proxyWorkloads(dir).length >= 1, `${dir} has a proxy workload`)
})

for (const dir of directories) {
  t.test(`${dir}: valid Kubernetes objects, hardened and consistent proxies`, async (t) => {
    t.same(checkDirectory(dir, deploy.docs), [])
  })
}

t.test('deploy/sidecar: a native sidecar on the pod loopback beside a tool using localhost:5000', async (t) => {
  const [w] = proxyWorkloads('deploy/sidecar')
  if (w === undefined) return t.fail('no workload')
  const proxy = arr(w.podSpec.initContainers).map(obj).find(isProxy)
  t.equal(proxy?.restartPolicy, 'Always')
  t.equal(w.podSpec.hostNetwork, undefined)
  const tools = arr(w.podSpec.containers).map(obj).filter((c) => !isProxy(c))
  t.ok(tools.length >= 1 && tools.every((c) => [...arr(c.command), ...arr(c.args)].join(' ').includes('localhost:5000/')), 'the tool goes through localhost:5000')
  t.equal(setting(proxy ?? {}, 'cache-dir'), '/var/cache/ecr-auth-proxy')
  t.equal(setting(proxy ?? {}, 'cache-max-size'), '1GiB', 'the size docs/operations.md gives')
  t.same(arr(w.podSpec.volumes).map(obj).find((v) => v.name === 'proxy-cache'), { name: 'proxy-cache', emptyDir: { sizeLimit: '1200Mi' } })
})

t.test('deploy/shared: a Service, client authentication from a Secret, never the risk flag', async (t) => {
  const [w] = proxyWorkloads('deploy/shared')
  if (w === undefined) return t.fail('no workload')
  const c = proxiesOf(w)[0] as Obj
  t.equal(setting(c, 'host', image.host), '0.0.0.0')
  t.match(setting(c, 'htpasswd'), /^\//)
  t.equal(setting(c, 'allow-unauthenticated'), undefined)
  t.ok(deploy.docs.some((d) => d.dir === 'deploy/shared' && d.object.kind === 'Service'))
  t.ok(num(obj(w.doc.object.spec).replicas) !== undefined && (num(obj(w.doc.object.spec).replicas) ?? 0) >= 2, 'replicated')
})

t.test('deploy/daemonset: hostNetwork on the node loopback', async (t) => {
  const [w] = proxyWorkloads('deploy/daemonset')
  if (w === undefined) return t.fail('no workload')
  t.equal(w.kind, 'DaemonSet')
  t.equal(w.podSpec.hostNetwork, true)
  t.equal(w.podSpec.dnsPolicy, 'ClusterFirstWithHostNet')
  t.equal(setting(proxiesOf(w)[0] as Obj, 'host', image.host), '127.0.0.1')
  t.equal(setting(proxiesOf(w)[0] as Obj, 'read-only'), 'true', 'node-level proxy is read-only')
  const toml = readFileSync(join(DEPLOY, 'daemonset', 'node', 'hosts.toml'), 'utf8')
  t.match(toml, /^server = "http:\/\/127\.0\.0\.1:5000"$/m, 'localhost:5000/… names still work')
  t.match(toml, /^server = "http:\/\/127\.0\.0\.1:5000"$/m)
  t.match(toml, /^\[host\."http:\/\/127\.0\.0\.1:5000"\]\n\s+capabilities = \["pull", "resolve"\]$/m)
})

t.test('deploy/daemonset: an init container points the node\'s containerd at the proxy, per registry', async (t) => {
  const [w] = proxyWorkloads('deploy/daemonset')
  if (w === undefined) return t.fail('no workload')
  const inits = arr(w.podSpec.initContainers).map(obj)
  const writer = inits.find(isClientConfig)
  if (writer === undefined) return t.fail('no client-config init container')
  const proxy = proxiesOf(w)[0] as Obj
  t.equal(writer.image, proxy.image, 'the proxy\'s own image')
  t.same(writer.args, ['client-config', 'containerd', '--registry', '600423610423.dkr.ecr.us-east-2.amazonaws.com', '--proxy', 'http://127.0.0.1:5000', '--dir', '/host/etc/containerd/certs.d'])
  t.same(writer.volumeMounts, [{ name: 'containerd-certs', mountPath: '/host/etc/containerd/certs.d' }], 'that directory and nothing else')
  t.same(arr(w.podSpec.volumes).map(obj).find((v) => v.name === 'containerd-certs'), { name: 'containerd-certs', hostPath: { path: '/etc/containerd/certs.d', type: 'DirectoryOrCreate' } })
  t.match(writer.securityContext, { runAsUser: 0, readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } })
  t.equal(obj(proxy.securityContext).runAsUser, 1000, 'the proxy itself stays uid 1000')

  // The arguments are ones the subcommand accepts, and produce the file containerd reads.
  const args = arr(writer.args).map(String)
  const dirAt = args.indexOf('--dir')
  let out = ''
  let err = ''
  const code = await runClientConfig([...args.slice(1, dirAt), ...args.slice(dirAt + 2)], [], { stdout: { write: (chunk: string) => { out += chunk } }, stderr: { write: (chunk: string) => { err += chunk } } })
  t.equal(code, 0, err)
  t.match(out, /^# 600423610423\.dkr\.ecr\.us-east-2\.amazonaws\.com\/hosts\.toml\n/)
  t.match(out, /^server = "https:\/\/600423610423\.dkr\.ecr\.us-east-2\.amazonaws\.com"\n\n\[host\."http:\/\/127\.0\.0\.1:5000"\]\n {2}capabilities = \["pull", "resolve"\]$/m)
})

t.test('deploy/daemonset: the layer cache on the node\'s disk, handed to uid 1000 first', async (t) => {
  const [w] = proxyWorkloads('deploy/daemonset')
  if (w === undefined) return t.fail('no workload')
  const proxy = proxiesOf(w)[0] as Obj
  t.equal(setting(proxy, 'cache-dir'), CACHE_HOST_DIR)
  t.equal(setting(proxy, 'cache-max-size'), '20GiB', 'the size docs/operations.md gives')
  t.same(arr(proxy.volumeMounts).map(obj).find((m) => m.name === 'cache'), { name: 'cache', mountPath: CACHE_HOST_DIR })
  t.same(arr(w.podSpec.volumes).map(obj).find((v) => v.name === 'cache'), { name: 'cache', hostPath: { path: CACHE_HOST_DIR, type: 'DirectoryOrCreate' } })
  const inits = arr(w.podSpec.initContainers).map(obj)
  const owner = inits.find(isCacheOwner)
  if (owner === undefined) return t.fail('no cache-owner init container')
  t.ok(inits.indexOf(owner) >= 0 && !arr(w.podSpec.containers).includes(owner), 'an init container: done before the proxy starts')
  t.equal(owner.image, proxy.image, 'the proxy\'s own image')
  t.same(owner.command, ['node', '-e', "require('node:fs').chownSync('/cache', 1000, 1000)"], 'node: the image has no chown')
  t.equal(owner.args, undefined)
  t.same(owner.volumeMounts, [{ name: 'cache', mountPath: '/cache' }], 'that directory and nothing else')
  t.same(owner.securityContext, { runAsNonRoot: false, runAsUser: 0, runAsGroup: 0, readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, privileged: false, capabilities: { drop: ['ALL'], add: ['CHOWN'] }, seccompProfile: { type: 'RuntimeDefault' } })
  t.equal(obj(proxy.securityContext).runAsUser, 1000, 'the proxy itself stays uid 1000')
  t.equal(obj(obj(proxy.securityContext).capabilities).add, undefined, 'and gets no capability back')
  // Exactly two containers run as root, and only cache-owner gets a capability back.
  const all = containersOf(w.podSpec)
  t.same(all.filter((c) => obj(c.securityContext).runAsUser === 0).map((c) => c.name).sort(), ['cache-owner', 'client-config'])
  t.same(all.filter((c) => arr(obj(obj(c.securityContext).capabilities).add).length > 0).map((c) => c.name), ['cache-owner'])

  // The command does what it says, in this Node: the directory ends up owned by the given ids.
  const { mkdtempSync, statSync, rmSync } = await import('node:fs')
  const { tmpdir } = await import('node:os')
  const { execFileSync } = await import('node:child_process')
  const dir = mkdtempSync(join(tmpdir(), 'cache-owner-'))
  const uid = process.getuid?.() ?? 0
  const cmd = arr(owner.command).map(String)
  execFileSync(process.execPath, [cmd[1] as string, (cmd[2] as string).replace(`'${CACHE_OWNER_MOUNT}', 1000, 1000`, `${JSON.stringify(dir)}, ${uid}, ${process.getgid?.() ?? 0}`)])
  t.equal(statSync(dir).uid, uid)
  rmSync(dir, { recursive: true })
})

const composeText = readFileSync(join(ROOT, 'docker-compose.yml'), 'utf8')
const compose = parseYamlFile(composeText, 'docker-compose.yml')

t.test('docker-compose.yml: loopback only, hardened, healthchecked', async (t) => {
  t.same(compose.problems, [])
  t.equal(compose.docs.length, 1)
  t.same(checkCompose(compose.docs[0], image), [])
})

// --- each rule fails on a broken copy ------------------------------------------------------------

interface Breakage {
  name: string
  dir: string
  kind: string
  change: (object: Obj, proxy: Obj, podSpec: Obj) => void
  expect: RegExp
}

const setEnv = (c: Obj, name: string, value: string | undefined): void => {
  const rest = env(c).filter((e) => e.name !== name)
  c.env = value === undefined ? rest : [...rest, { name, value }]
}

/** The DaemonSet's client-config init container inside a (copied) pod spec. */
const writerOf = (podSpec: Obj): Obj => obj(arr(podSpec.initContainers).map(obj).find(isClientConfig))
/** The DaemonSet's cache-owner init container, and the cache hostPath volume, in a (copied) pod spec. */
const ownerOf = (podSpec: Obj): Obj => obj(arr(podSpec.initContainers).map(obj).find(isCacheOwner))
const cacheVolumeOf = (podSpec: Obj): Obj => obj(arr(podSpec.volumes).map(obj).find((v) => v.name === 'cache'))
const setArg = (c: Obj, flag: string, value: string | undefined): void => {
  const args = arr(c.args).map(String)
  const at = args.indexOf(flag)
  if (at >= 0) args.splice(at, 2)
  c.args = value === undefined ? args : [...args, flag, value]
}

const BREAKAGES: Breakage[] = [
  { name: 'client-config without the proxy\'s registry', dir: 'deploy/daemonset', kind: 'DaemonSet', change: (_o, _c, p) => { setArg(writerOf(p), '--registry', '111122223333.dkr.ecr.eu-west-1.amazonaws.com') }, expect: /container client-config: does not list 600423610423\.dkr\.ecr\.us-east-2\.amazonaws\.com, the registry its proxy serves/ },
  { name: 'client-config given a registry URL', dir: 'deploy/daemonset', kind: 'DaemonSet', change: (_o, _c, p) => { setArg(writerOf(p), '--registry', 'https://600423610423.dkr.ecr.us-east-2.amazonaws.com') }, expect: /container client-config: --registry "https:\/\/600423610423\.dkr\.ecr\.us-east-2\.amazonaws\.com": a hostname, not a URL/ },
  { name: 'client-config pointing at another port', dir: 'deploy/daemonset', kind: 'DaemonSet', change: (_o, _c, p) => { setArg(writerOf(p), '--proxy', 'http://127.0.0.1:5001') }, expect: /--proxy http:\/\/127\.0\.0\.1:5001 is not where the pod's proxy listens \(http:\/\/127\.0\.0\.1:5000\)/ },
  { name: 'client-config with the test-only --server', dir: 'deploy/daemonset', kind: 'DaemonSet', change: (_o, _c, p) => { setArg(writerOf(p), '--server', 'http://127.0.0.1:9') }, expect: /unexpected client-config argument --server \(tests only/ },
  { name: 'client-config that only prints', dir: 'deploy/daemonset', kind: 'DaemonSet', change: (_o, _c, p) => { setArg(writerOf(p), '--dir', undefined) }, expect: /container client-config: no --dir/ },
  { name: 'client-config for another client', dir: 'deploy/daemonset', kind: 'DaemonSet', change: (_o, _c, p) => { arr(writerOf(p).args)[1] = 'k3s' }, expect: /client-config k3s writes no containerd hosts files/ },
  { name: 'client-config as a sidecar', dir: 'deploy/daemonset', kind: 'DaemonSet', change: (_o, _c, p) => { writerOf(p).restartPolicy = 'Always' }, expect: /must run once, not as a sidecar/ },
  { name: 'client-config as a regular container', dir: 'deploy/daemonset', kind: 'DaemonSet', change: (_o, _c, p) => { p.containers = [...arr(p.containers), writerOf(p)]; p.initContainers = [] }, expect: /client-config must be an init container/ },
  { name: 'client-config with a capability', dir: 'deploy/daemonset', kind: 'DaemonSet', change: (_o, _c, p) => { obj(obj(writerOf(p).securityContext).capabilities).add = ['DAC_OVERRIDE'] }, expect: /container client-config: adds capabilities/ },
  { name: 'client-config keeping its capabilities', dir: 'deploy/daemonset', kind: 'DaemonSet', change: (_o, _c, p) => { delete obj(writerOf(p).securityContext).capabilities }, expect: /container client-config: capabilities do not drop ALL/ },
  { name: 'client-config with privilege escalation', dir: 'deploy/daemonset', kind: 'DaemonSet', change: (_o, _c, p) => { delete obj(writerOf(p).securityContext).allowPrivilegeEscalation }, expect: /container client-config: allowPrivilegeEscalation is not false/ },
  { name: 'client-config on a read-only mount', dir: 'deploy/daemonset', kind: 'DaemonSet', change: (_o, _c, p) => { obj(arr(writerOf(p).volumeMounts)[0]).readOnly = true }, expect: /is mounted read-only/ },
  { name: 'client-config writing into a wider host directory', dir: 'deploy/daemonset', kind: 'DaemonSet', change: (_o, _c, p) => { obj(obj(arr(p.volumes).map(obj).find((v) => v.name === 'containerd-certs')).hostPath).path = '/etc/containerd' }, expect: /hostPath volume containerd-certs \(\/etc\/containerd\)/ },
  { name: 'a hostPath of another type', dir: 'deploy/daemonset', kind: 'DaemonSet', change: (_o, _c, p) => { obj(obj(arr(p.volumes).map(obj).find((v) => v.name === 'containerd-certs')).hostPath).type = 'File' }, expect: /is not of type Directory or DirectoryOrCreate/ },
  { name: 'the proxy mounting the node\'s certs.d', dir: 'deploy/daemonset', kind: 'DaemonSet', change: (_o, c) => { c.volumeMounts = [...arr(c.volumeMounts), { name: 'containerd-certs', mountPath: '/host/certs.d' }] }, expect: /container ecr-auth-proxy mounts the hostPath volume containerd-certs/ },
  { name: 'the proxy as root beside the root writer', dir: 'deploy/daemonset', kind: 'DaemonSet', change: (_o, c) => { obj(c.securityContext).runAsUser = 0 }, expect: /container ecr-auth-proxy: runAsUser 0$/ },
  { name: 'a second root container (cache-owner copied under another name)', dir: 'deploy/daemonset', kind: 'DaemonSet', change: (_o, _c, p) => { p.initContainers = [...arr(p.initContainers), { ...structuredClone(ownerOf(p)), name: 'cache-setup' }] }, expect: /container cache-setup: runAsUser 0$/ },
  { name: 'a second root container (a root tool)', dir: 'deploy/sidecar', kind: 'Job', change: (_o, _c, p) => { Object.assign(obj(obj(arr(p.containers)[0]).securityContext), { runAsUser: 0, runAsNonRoot: false }) }, expect: /container skopeo: runAsNonRoot is not true/ },
  { name: 'CHOWN on the proxy', dir: 'deploy/daemonset', kind: 'DaemonSet', change: (_o, c) => { obj(obj(c.securityContext).capabilities).add = ['CHOWN'] }, expect: /container ecr-auth-proxy: adds capabilities \["CHOWN"\]/ },
  { name: 'CHOWN on client-config', dir: 'deploy/daemonset', kind: 'DaemonSet', change: (_o, _c, p) => { obj(obj(writerOf(p).securityContext).capabilities).add = ['CHOWN'] }, expect: /container client-config: adds capabilities \["CHOWN"\]/ },
  { name: 'cache-owner with more than CHOWN', dir: 'deploy/daemonset', kind: 'DaemonSet', change: (_o, _c, p) => { obj(obj(ownerOf(p).securityContext).capabilities).add = ['CHOWN', 'DAC_OVERRIDE'] }, expect: /container cache-owner: adds capabilities \["DAC_OVERRIDE"\]/ },
  { name: 'cache-owner keeping its capabilities', dir: 'deploy/daemonset', kind: 'DaemonSet', change: (_o, _c, p) => { delete obj(obj(ownerOf(p).securityContext).capabilities).drop }, expect: /container cache-owner: capabilities do not drop ALL/ },
  { name: 'cache-owner privileged', dir: 'deploy/daemonset', kind: 'DaemonSet', change: (_o, _c, p) => { obj(ownerOf(p).securityContext).privileged = true }, expect: /container cache-owner: privileged/ },
  { name: 'cache-owner on a writable root', dir: 'deploy/daemonset', kind: 'DaemonSet', change: (_o, _c, p) => { obj(ownerOf(p).securityContext).readOnlyRootFilesystem = false }, expect: /container cache-owner: readOnlyRootFilesystem is not true/ },
  { name: 'cache-owner running something else', dir: 'deploy/daemonset', kind: 'DaemonSet', change: (_o, _c, p) => { ownerOf(p).command = ['chown', '-R', '1000:1000', '/cache'] }, expect: /container cache-owner: runs \["chown","-R","1000:1000","\/cache"\], not/ },
  { name: 'cache-owner chowning to root', dir: 'deploy/daemonset', kind: 'DaemonSet', change: (_o, _c, p) => { ownerOf(p).command = cacheOwnerCommand(0) }, expect: /container cache-owner: runs .*, not .*the chown to uid 1000/ },
  { name: 'cache-owner with extra arguments', dir: 'deploy/daemonset', kind: 'DaemonSet', change: (_o, _c, p) => { ownerOf(p).args = ['--inspect'] }, expect: /container cache-owner: runs / },
  { name: 'cache-owner as non-root', dir: 'deploy/daemonset', kind: 'DaemonSet', change: (_o, _c, p) => { obj(ownerOf(p).securityContext).runAsUser = 1000 }, expect: /container cache-owner: runAsUser 1000: only uid 0 may chown/ },
  { name: 'cache-owner from another image', dir: 'deploy/daemonset', kind: 'DaemonSet', change: (_o, _c, p) => { ownerOf(p).image = 'example.com/ecr-auth-proxy:0.0.9' }, expect: /container cache-owner: image example\.com\/ecr-auth-proxy:0\.0\.9 is not the proxy's image/ },
  { name: 'cache-owner as a sidecar', dir: 'deploy/daemonset', kind: 'DaemonSet', change: (_o, _c, p) => { ownerOf(p).restartPolicy = 'Always' }, expect: /container cache-owner: cache-owner must run once/ },
  { name: 'cache-owner as a regular container', dir: 'deploy/daemonset', kind: 'DaemonSet', change: (_o, _c, p) => { const owner = ownerOf(p); p.initContainers = arr(p.initContainers).filter((c) => c !== owner); p.containers = [...arr(p.containers), owner] }, expect: /cache-owner must be an init container/ },
  { name: 'cache-owner also mounting the node\'s certs.d', dir: 'deploy/daemonset', kind: 'DaemonSet', change: (_o, _c, p) => { const o = ownerOf(p); o.volumeMounts = [...arr(o.volumeMounts), { name: 'containerd-certs', mountPath: '/certs' }] }, expect: /container cache-owner mounts the hostPath volume containerd-certs/ },
  { name: 'client-config mounting the cache', dir: 'deploy/daemonset', kind: 'DaemonSet', change: (_o, _c, p) => { const w = writerOf(p); w.volumeMounts = [...arr(w.volumeMounts), { name: 'cache', mountPath: '/cache' }] }, expect: /container client-config mounts the hostPath volume cache/ },
  { name: 'the proxy mounting the cache elsewhere than --cache-dir', dir: 'deploy/daemonset', kind: 'DaemonSet', change: (_o, c) => { c.volumeMounts = [...arr(c.volumeMounts), { name: 'cache', mountPath: '/srv/more' }] }, expect: /container ecr-auth-proxy mounts the hostPath volume cache/ },
  { name: 'the cache hostPath elsewhere on the node', dir: 'deploy/daemonset', kind: 'DaemonSet', change: (_o, _c, p) => { obj(cacheVolumeOf(p).hostPath).path = '/var/lib' }, expect: /hostPath volume cache \(\/var\/lib\)/ },
  { name: 'the cache hostPath that must already exist', dir: 'deploy/daemonset', kind: 'DaemonSet', change: (_o, _c, p) => { obj(cacheVolumeOf(p).hostPath).type = 'Directory' }, expect: /the cache's hostPath \/var\/cache\/ecr-auth-proxy is not of type DirectoryOrCreate/ },
  { name: 'a hostPath cache nothing chowns', dir: 'deploy/daemonset', kind: 'DaemonSet', change: (_o, _c, p) => { p.initContainers = arr(p.initContainers).filter((c) => !isCacheOwner(obj(c))) }, expect: /is root-owned, and no cache-owner init container chowns it to uid 1000/ },
  { name: 'a hostPath in the shared Deployment', dir: 'deploy/shared', kind: 'Deployment', change: (_o, c, p) => { p.volumes = [...arr(p.volumes), { name: 'sock', hostPath: { path: '/var/run/docker.sock', type: 'Socket' } }]; c.volumeMounts = [...arr(c.volumeMounts), { name: 'sock', mountPath: '/var/run/docker.sock' }] }, expect: /hostPath volume sock \(\/var\/run\/docker\.sock\)/ },
  { name: 'the sidecar\'s cache on the node\'s disk', dir: 'deploy/sidecar', kind: 'Job', change: (_o, _c, p) => { const v = obj(arr(p.volumes).map(obj).find((v) => v.name === 'proxy-cache')); delete v.emptyDir; v.hostPath = { path: '/var/cache/ecr-auth-proxy', type: 'DirectoryOrCreate' } }, expect: /no cache-owner init container chowns it/ },
  { name: 'client-config without hostNetwork', dir: 'deploy/daemonset', kind: 'DaemonSet', change: (_o, _c, p) => { p.hostNetwork = false }, expect: /without hostNetwork the node's containerd cannot reach the proxy/ },
  { name: 'replicas is not an integer', dir: 'deploy/shared', kind: 'Deployment', change: (o) => { obj(o.spec).replicas = 'two' }, expect: /fails the Kubernetes schema: .*replicas must be integer/ },
  { name: 'a container without a name', dir: 'deploy/daemonset', kind: 'DaemonSet', change: (_o, c) => { delete c.name }, expect: /fails the Kubernetes schema: .*required property name/ },
  { name: 'an invalid quantity', dir: 'deploy/shared', kind: 'Deployment', change: (_o, c) => { obj(obj(c.resources).limits).memory = 'lots' }, expect: /fails the Kubernetes schema: .*limits\/memory/ },
  { name: 'a misspelt probe field', dir: 'deploy/shared', kind: 'Deployment', change: (_o, c) => { c.readinessProbes = c.readinessProbe; delete c.readinessProbe }, expect: /\.readinessProbes: unknown field/ },
  { name: 'a misspelt securityContext field', dir: 'deploy/daemonset', kind: 'DaemonSet', change: (_o, c) => { const sc = obj(c.securityContext); sc.readOnlyRootFileSystem = true; delete sc.readOnlyRootFilesystem }, expect: /readOnlyRootFilesystem is not true/ },
  { name: 'a misspelt metadata field', dir: 'deploy/shared', kind: 'ServiceAccount', change: (o) => { obj(o.metadata).annotation = obj(o.metadata).annotations; delete obj(o.metadata).annotations }, expect: /metadata\.annotation: unknown field/ },
  { name: 'liveness and readiness swapped', dir: 'deploy/shared', kind: 'Deployment', change: (_o, c) => { [c.livenessProbe, c.readinessProbe] = [c.readinessProbe, c.livenessProbe] }, expect: /livenessProbe asks \/readyz/ },
  { name: 'a cache larger than its emptyDir', dir: 'deploy/sidecar', kind: 'Job', change: (_o, c) => { arr(c.args)[arr(c.args).indexOf('--cache-max-size') + 1] = '2GiB' }, expect: /the cache's emptyDir sizeLimit 1200Mi does not exceed --cache-max-size 2147483648 bytes by 10%/ },
  { name: 'a cache on the read-only root', dir: 'deploy/sidecar', kind: 'Job', change: (_o, c) => { c.volumeMounts = arr(c.volumeMounts).map(obj).filter((m) => m.name !== 'proxy-cache') }, expect: /--cache-dir \/var\/cache\/ecr-auth-proxy is not a volume mount/ },
  { name: 'no liveness probe', dir: 'deploy/sidecar', kind: 'Job', change: (_o, c) => { delete c.livenessProbe }, expect: /no livenessProbe/ },
  { name: 'a probe on another port', dir: 'deploy/daemonset', kind: 'DaemonSet', change: (_o, c) => { obj(obj(c.readinessProbe).httpGet).port = 5001 }, expect: /readinessProbe asks port 5001/ },
  { name: 'an HTTPS probe on an HTTP listener', dir: 'deploy/shared', kind: 'Deployment', change: (_o, c) => { obj(obj(c.livenessProbe).httpGet).scheme = 'HTTPS' }, expect: /livenessProbe uses HTTPS, the proxy serves HTTP/ },
  { name: 'an HTTP probe on a TLS listener', dir: 'deploy/shared', kind: 'Deployment', change: (_o, c) => { setEnv(c, 'ECR_PROXY_TLS_CERT', '/etc/ecr-auth-proxy/tls/tls.crt') }, expect: /readinessProbe uses HTTP, the proxy serves HTTPS/ },
  { name: 'hostNetwork httpGet probe without host 127.0.0.1', dir: 'deploy/daemonset', kind: 'DaemonSet', change: (_o, c) => { delete obj(obj(c.livenessProbe).httpGet).host }, expect: /must set host: 127\.0\.0\.1/ },
  { name: 'httpGet probe on a pod-loopback listener', dir: 'deploy/sidecar', kind: 'Job', change: (_o, c) => { c.readinessProbe = { httpGet: { path: '/readyz', port: 5000 } } }, expect: /kubelet cannot reach the pod's loopback/ },
  { name: 'an exec probe with curl', dir: 'deploy/sidecar', kind: 'Job', change: (_o, c) => { c.livenessProbe = { exec: { command: ['curl', '-f', 'http://127.0.0.1:5000/healthz'] } } }, expect: /image only has node/ },
  { name: 'no memory limit', dir: 'deploy/shared', kind: 'Deployment', change: (_o, c) => { delete obj(obj(c.resources).limits).memory }, expect: /no memory limit/ },
  { name: 'a limit below the request', dir: 'deploy/daemonset', kind: 'DaemonSet', change: (_o, c) => { obj(obj(c.resources).limits).cpu = '10m' }, expect: /cpu limit below its request/ },
  { name: 'a writable root filesystem', dir: 'deploy/shared', kind: 'Deployment', change: (_o, c) => { obj(c.securityContext).readOnlyRootFilesystem = false }, expect: /readOnlyRootFilesystem is not true/ },
  { name: 'root allowed', dir: 'deploy/sidecar', kind: 'Job', change: (_o, c, p) => { delete obj(c.securityContext).runAsNonRoot; delete obj(p.securityContext).runAsNonRoot }, expect: /runAsNonRoot is not true/ },
  { name: 'another user than the image\'s', dir: 'deploy/shared', kind: 'Deployment', change: (_o, c) => { obj(c.securityContext).runAsUser = 2000 }, expect: /runAsUser 2000 is not the image's user 1000/ },
  { name: 'capabilities kept', dir: 'deploy/daemonset', kind: 'DaemonSet', change: (_o, c) => { delete obj(c.securityContext).capabilities }, expect: /do not drop ALL/ },
  { name: 'privilege escalation allowed', dir: 'deploy/shared', kind: 'Deployment', change: (_o, c) => { delete obj(c.securityContext).allowPrivilegeEscalation }, expect: /allowPrivilegeEscalation is not false/ },
  { name: 'no seccomp profile', dir: 'deploy/sidecar', kind: 'Job', change: (_o, c, p) => { delete obj(c.securityContext).seccompProfile; delete obj(p.securityContext).seccompProfile }, expect: /seccompProfile is not RuntimeDefault/ },
  { name: 'the tool container unhardened', dir: 'deploy/sidecar', kind: 'Job', change: (_o, _c, p) => { delete obj(obj(arr(p.containers)[0]).securityContext).readOnlyRootFilesystem }, expect: /container skopeo: readOnlyRootFilesystem is not true/ },
  { name: 'an unpinned image', dir: 'deploy/shared', kind: 'Deployment', change: (_o, c) => { c.image = '600423610423.dkr.ecr.us-east-2.amazonaws.com/ecr-auth-proxy:latest' }, expect: /is not pinned/ },
  { name: 'shared proxy without client authentication', dir: 'deploy/shared', kind: 'Deployment', change: (_o, c) => { setEnv(c, 'ECR_PROXY_HTPASSWD', undefined) }, expect: /listens on 0\.0\.0\.0 without client authentication/ },
  { name: 'the risk flag as an env var', dir: 'deploy/shared', kind: 'Deployment', change: (_o, c) => { setEnv(c, 'ECR_PROXY_ALLOW_UNAUTHENTICATED', 'true') }, expect: /sets allow-unauthenticated/ },
  { name: 'the risk flag as a flag', dir: 'deploy/daemonset', kind: 'DaemonSet', change: (_o, c) => { c.args = [...arr(c.args), '--allow-unauthenticated'] }, expect: /sets allow-unauthenticated \(true\)/ },
  { name: 'bearer tokens written into the manifest', dir: 'deploy/shared', kind: 'Deployment', change: (_o, c) => { setEnv(c, 'ECR_PROXY_HTPASSWD', undefined); setEnv(c, 'ECR_PROXY_BEARER_TOKENS', 'dev-token-1') }, expect: /written into the manifest/ },
  { name: 'htpasswd mounted with subPath', dir: 'deploy/shared', kind: 'Deployment', change: (_o, c) => { const m = arr(c.volumeMounts).map(obj).find((v) => v.name === 'htpasswd'); if (m !== undefined) { m.subPath = 'htpasswd'; m.mountPath = '/etc/ecr-auth-proxy/auth/htpasswd' } }, expect: /subPath/ },
  { name: 'htpasswd not from a Secret', dir: 'deploy/shared', kind: 'Deployment', change: (_o, _c, p) => { p.volumes = arr(p.volumes).map(obj).map((v) => v.name === 'htpasswd' ? { name: 'htpasswd', emptyDir: {} } : v) }, expect: /is not on a volume from a Secret/ },
  { name: 'a world-readable htpasswd Secret', dir: 'deploy/shared', kind: 'Deployment', change: (_o, _c, p) => { obj(obj(arr(p.volumes).map(obj).find((v) => v.name === 'htpasswd')).secret).defaultMode = 0o444 }, expect: /world-readable/ },
  { name: 'a shared proxy on loopback', dir: 'deploy/shared', kind: 'Deployment', change: (_o, c) => { setEnv(c, 'ECR_PROXY_HOST', '127.0.0.1') }, expect: /unreachable through its Service/ },
  { name: 'a sidecar on 0.0.0.0', dir: 'deploy/sidecar', kind: 'Job', change: (_o, c) => { setEnv(c, 'ECR_PROXY_HOST', '0.0.0.0') }, expect: /must listen on loopback, listens on 0\.0\.0\.0/ },
  { name: 'a DaemonSet on the image default (0.0.0.0)', dir: 'deploy/daemonset', kind: 'DaemonSet', change: (_o, c) => { setEnv(c, 'ECR_PROXY_HOST', undefined) }, expect: /must listen on loopback, listens on 0\.0\.0\.0/ },
  { name: 'a flag overriding the env host', dir: 'deploy/daemonset', kind: 'DaemonSet', change: (_o, c) => { c.args = [...arr(c.args), '--host=0.0.0.0'] }, expect: /must listen on loopback/ },
  { name: 'a native sidecar that is a plain init container', dir: 'deploy/sidecar', kind: 'Job', change: (_o, c) => { delete c.restartPolicy }, expect: /without restartPolicy: Always/ },
  { name: 'no /tmp beside the read-only root', dir: 'deploy/daemonset', kind: 'DaemonSet', change: (_o, c) => { c.volumeMounts = [] }, expect: /no writable \/tmp/ },
  { name: 'a grace period shorter than the drain', dir: 'deploy/shared', kind: 'Deployment', change: (_o, _c, p) => { p.terminationGracePeriodSeconds = 30 }, expect: /terminationGracePeriodSeconds 30 does not exceed/ },
  { name: 'a Service to the wrong port', dir: 'deploy/shared', kind: 'Service', change: (o) => { obj(arr(obj(o.spec).ports)[0]).targetPort = 8080 }, expect: /targetPort 8080 is not the proxy's port/ },
  { name: 'a Service selecting nothing', dir: 'deploy/shared', kind: 'Service', change: (o) => { obj(o.spec).selector = { app: 'other' } }, expect: /selector matches no proxy pod/ },
  { name: 'a LoadBalancer Service', dir: 'deploy/shared', kind: 'Service', change: (o) => { obj(o.spec).type = 'LoadBalancer' }, expect: /exposes the proxy beyond the cluster/ },
  { name: 'a ServiceAccount without IRSA', dir: 'deploy/daemonset', kind: 'ServiceAccount', change: (o) => { delete obj(o.metadata).annotations }, expect: /no IRSA annotation/ },
  { name: 'a PodDisruptionBudget selecting nothing', dir: 'deploy/shared', kind: 'PodDisruptionBudget', change: (o) => { obj(obj(o.spec).selector).matchLabels = { app: 'other' } }, expect: /selector matches no pod here/ },
  { name: 'an unknown kind', dir: 'deploy/shared', kind: 'Service', change: (o) => { o.kind = 'Servce' }, expect: /unknown kind v1\/Servce/ },
  { name: 'a kustomization missing a file', dir: 'deploy/shared', kind: 'Kustomization', change: (o) => { o.resources = arr(o.resources).slice(1) }, expect: /does not list deploy\/shared\/namespace\.yaml/ }
]

function brokenProblems (b: Breakage): string[] {
  const docs = deploy.docs.map((d) => ({ ...d, object: structuredClone(d.object) }))
  const target = docs.find((d) => d.dir === b.dir && d.object.kind === b.kind)
  if (target === undefined) throw new Error(`no ${b.kind} in ${b.dir}`)
  const w = workloadOf(target)
  b.change(target.object, w === undefined ? {} : proxiesOf(w)[0] ?? {}, w?.podSpec ?? {})
  return checkDirectory(b.dir, docs)
}

t.test('each manifest rule fails on a broken copy', async (t) => {
  for (const b of BREAKAGES) {
    const problems = brokenProblems(b)
    t.ok(problems.some((p) => b.expect.test(p)), b.name, { expect: b.expect, problems })
  }
})

t.test('the rules accept the other ways of doing it right', async (t) => {
  const variants: Array<[string, string, string, (object: Obj, proxy: Obj, podSpec: Obj) => void]> = [
    ['bearer tokens from a Secret instead of htpasswd', 'deploy/shared', 'Deployment', (_o, c) => {
      setEnv(c, 'ECR_PROXY_HTPASSWD', undefined)
      c.env = [...env(c), { name: 'ECR_PROXY_BEARER_TOKENS', valueFrom: { secretKeyRef: { name: 'ecr-auth-proxy-tokens', key: 'tokens' } } }]
    }],
    ['the settings as flags instead of env', 'deploy/daemonset', 'DaemonSet', (_o, c) => {
      setEnv(c, 'ECR_PROXY_HOST', undefined)
      c.args = [...arr(c.args), '--host', '127.0.0.1']
    }]
  ]
  for (const [name, dir, kind, change] of variants) {
    t.same(brokenProblems({ name, dir, kind, change, expect: /^$/ }), [], name)
  }
})

t.test('YAML that kubectl would read differently, or duplicate keys, fails', async (t) => {
  const { problems } = parseYamlFile('a: on\nb: 0440\nc: "on"\nd: 0o440\n', 'x.yaml')
  t.equal(problems.length, 2, 'on and 0440; quoted and 0o forms are fine')
  t.match(parseYamlFile('a: 1\na: 2\n', 'y.yaml').problems, [/Map keys must be unique/])
})

t.test('each compose rule fails on a broken copy', async (t) => {
  const breakages: Array<[string, (s: Obj, top: Obj) => void, RegExp]> = [
    ['published on every address', (s) => { s.ports = ['5000:5000'] }, /is not published on loopback only/],
    ['published on a LAN address', (s) => { s.ports = ['192.0.2.10:5000:5000'] }, /is not published on loopback only/],
    ['long syntax without host_ip', (s) => { s.ports = [{ target: 5000, published: 5000 }] }, /is not published on loopback only/],
    ['host networking', (s) => { s.network_mode = 'host' }, /network_mode host/],
    ['neither auth nor the flag', (s) => { delete obj(s.environment).ECR_PROXY_ALLOW_UNAUTHENTICATED }, /would refuse to start/],
    ['writable root', (s) => { s.read_only = false }, /read_only is not true/],
    ['no tmpfs', (s) => { delete s.tmpfs }, /no tmpfs \/tmp/],
    ['capabilities kept', (s) => { delete s.cap_drop }, /cap_drop/],
    ['privilege gain allowed', (s) => { s.security_opt = [] }, /no-new-privileges/],
    ['root', (s) => { s.user = '0:0' }, /not an explicit non-root user/],
    ['healthcheck on /readyz', (s) => { obj(s.healthcheck).test = ['CMD', 'node', '-e', "fetch('http://127.0.0.1:5000/readyz')"] }, /healthcheck does not ask \/healthz/],
    ['no restart policy', (s) => { delete s.restart }, /no restart policy/],
    ['stop grace below the drain', (s) => { s.stop_grace_period = '10s' }, /stop_grace_period 10s/],
    ['~/.aws writable', (s) => { s.volumes = ['/home/me/.aws:/home/node/.aws'] }, /\.aws is not mounted read-only/],
    ['a misspelt key', (s) => { s.readonly = true }, /unknown service key readonly/],
    ['a misspelt top-level key', (_s, top) => { top.service = top.services }, /unknown top-level key service/],
    ['a project name', (_s, top) => { top.name = 'ecr-auth-proxy' }, /top-level name/]
  ]
  for (const [name, change, expect] of breakages) {
    const copy = structuredClone(obj(compose.docs[0]))
    change(obj(obj(copy.services)['ecr-auth-proxy']), copy)
    const problems = checkCompose(copy, image)
    t.ok(problems.some((p) => expect.test(p)), name, { expect, problems })
  }
})

t.test('each Dockerfile rule fails on a broken copy', async (t) => {
  const text = readFileSync(join(ROOT, 'Dockerfile'), 'utf8')
  const breakages: Array<[string, (s: string) => string, RegExp]> = [
    ['root user', (s) => s.replace(/^USER .*$/m, 'USER root'), /USER root is not a numeric uid/],
    ['uid 0', (s) => s.replace(/^USER .*$/m, 'USER 0:0'), /USER is root/],
    ['a command in the final stage', (s) => s.replace(/^USER /m, 'RUN true\nUSER '), /final stage runs commands/],
    ['a fixed base image', (s) => s.replace(/^ARG BASE_IMAGE=.*$/m, ''), /not a build argument/],
    ['listening on loopback', (s) => s.replace('ECR_PROXY_HOST=0.0.0.0', 'ECR_PROXY_HOST=127.0.0.1'), /ECR_PROXY_HOST is 127\.0\.0\.1/],
    ['another port exposed', (s) => s.replace(/^EXPOSE 5000$/m, 'EXPOSE 8080'), /does not EXPOSE 5000/],
    ['healthcheck with curl', (s) => s.replace(/CMD \["node", "-e", ".*"\]$/m, 'CMD curl -f http://127.0.0.1:5000/healthz'), /HEALTHCHECK does not ask \/healthz with node/],
    ['development dependencies shipped', (s) => s.replace('COPY --from=deps /src/node_modules', 'COPY --from=build /src/node_modules'), /npm ci --omit=dev/],
    ['an unlabelled stage', (s) => s.replace('LABEL ecr-auth-proxy.stage=deps\n', ''), /stage FROM \$\{BUILD_IMAGE\} AS deps has no LABEL/]
  ]
  for (const [name, change, expect] of breakages) {
    const broken = change(text)
    t.not(broken, text, `${name}: the change applies`)
    const { problems } = checkDockerfile(broken)
    t.ok(problems.some((p) => expect.test(p)), name, { expect, problems })
  }
})

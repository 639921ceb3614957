import t from 'tap'
import { parse } from 'yaml'
import { ClientConfigUsageError, parseOriginUrl, parseRegistryHost, registryServer } from '../../src/client-config/names.js'
import { containerdHosts, k3sRegistries, kindClusterConfig, kindContainerdPatch } from '../../src/client-config/render.js'

const ECR = '600423610423.dkr.ecr.us-east-2.amazonaws.com'
const ECR2 = '111122223333.dkr.ecr.eu-west-1.amazonaws.com'
const PROXY = 'http://127.0.0.1:5000'

t.test('containerd: one hosts.toml per registry, the proxy first with pull and resolve, the registry last', async (t) => {
  t.same(containerdHosts({ registries: [ECR], proxy: PROXY }), [{
    path: `${ECR}/hosts.toml`,
    content: `# ${ECR}: pulls go through ecr-auth-proxy (http://127.0.0.1:5000), which adds the registry's credentials.
# Written by \`ecr-auth-proxy client-config containerd\`; containerd reads it on every pull.

# Tried last, only when the proxy fails.
server = "https://${ECR}"

[host."http://127.0.0.1:5000"]
  capabilities = ["pull", "resolve"]
  # Plain HTTP, and no ca or skip_verify: either would make containerd try HTTPS first.
`
  }])
})

t.test('containerd: each registry its own file and server; docker.io is registry-1.docker.io', async (t) => {
  const files = containerdHosts({ registries: [ECR, 'public.ecr.aws', 'docker.io', 'localhost:5001', ECR], proxy: 'http://127.0.0.1:5000/' })
  t.same(files.map((f) => f.path), [`${ECR}/hosts.toml`, 'public.ecr.aws/hosts.toml', 'docker.io/hosts.toml', 'localhost:5001/hosts.toml'], 'repeats dropped, order kept')
  t.same(files.map((f) => /^server = (.*)$/m.exec(f.content)?.[1]), [`"https://${ECR}"`, '"https://public.ecr.aws"', '"https://registry-1.docker.io"', '"https://localhost:5001"'])
  for (const f of files) t.match(f.content, /^\[host\."http:\/\/127\.0\.0\.1:5000"\]$/m, `${f.path}: the proxy's origin, trailing slash dropped`)
})

t.test('containerd: a server override (tests) replaces every registry\'s own server', async (t) => {
  const files = containerdHosts({ registries: [ECR, ECR2], proxy: PROXY, server: 'http://127.0.0.1:9' })
  t.same(files.map((f) => /^server = (.*)$/m.exec(f.content)?.[1]), ['"http://127.0.0.1:9"', '"http://127.0.0.1:9"'])
  t.throws(() => containerdHosts({ registries: [ECR], proxy: PROXY, server: '127.0.0.1:9' }), { message: '--server "127.0.0.1:9": must be an http:// or https:// URL, e.g. http://127.0.0.1:5000' })
})

t.test('containerd: an https proxy takes a CA file; a plain-HTTP one refuses TLS settings', async (t) => {
  const [withCa] = containerdHosts({ registries: [ECR], proxy: 'https://ecr-proxy.internal:5443', ca: '/etc/ecr-auth-proxy/ca.pem' })
  t.match(withCa?.content, /^\[host\."https:\/\/ecr-proxy\.internal:5443"\]\n {2}capabilities = \["pull", "resolve"\]\n {2}ca = "\/etc\/ecr-auth-proxy\/ca\.pem"\n$/m)
  t.notMatch(withCa?.content, /Plain HTTP/)
  const [withoutCa] = containerdHosts({ registries: [ECR], proxy: 'https://ecr-proxy.internal:5443' })
  t.match(withoutCa?.content, /capabilities = \["pull", "resolve"\]\n$/, 'the system CAs: nothing after capabilities')
  t.throws(() => containerdHosts({ registries: [ECR], proxy: PROXY, ca: '/ca.pem' }), new ClientConfigUsageError('--ca is for an https:// proxy; this one is plain HTTP'))
  t.throws(() => containerdHosts({ registries: [ECR], proxy: 'https://p:1', ca: '' }), { message: '--ca: empty path' })
})

t.test('nothing to render without registries, or with a bad proxy', async (t) => {
  t.throws(() => containerdHosts({ registries: [], proxy: PROXY }), { message: 'no registries: give --registry HOST, once per registry' })
  t.throws(() => k3sRegistries({ registries: [], proxy: PROXY }), { message: 'no registries: give --registry HOST, once per registry' })
  t.throws(() => containerdHosts({ registries: [ECR], proxy: 'http://127.0.0.1:5000/v2' }), { message: '--proxy "http://127.0.0.1:5000/v2": scheme, host and port only (containerd adds /v2 itself)' })
})

t.test('registry hostnames: no scheme, no path, lower case, a dot, a port or localhost', async (t) => {
  for (const ok of [ECR, 'public.ecr.aws', 'docker.io', 'localhost', 'localhost:5000', '10.0.0.7:5000', 'registry.example.com:443', `${ECR.replace('dkr.ecr', 'dkr-ecr').replace('amazonaws.com', 'on.aws')}`]) {
    t.equal(parseRegistryHost(ok), ok, ok)
  }
  const refused: Array<[string, string]> = [
    [`https://${ECR}`, `--registry "https://${ECR}": a hostname, not a URL (drop https://)`],
    [`oci://${ECR}`, `--registry "oci://${ECR}": a hostname, not a URL (drop oci://)`],
    [`${ECR}/team`, `--registry "${ECR}/team": a hostname, without a path`],
    [`${ECR}/`, `--registry "${ECR}/": a hostname, without a path`],
    ['Public.ECR.aws', '--registry "Public.ECR.aws": write the hostname in lower case (image references do)'],
    ['', '--registry "": not a registry hostname'],
    ['-a.example', '--registry "-a.example": not a registry hostname'],
    ['a..example', '--registry "a..example": not a registry hostname'],
    ['a.example:', '--registry "a.example:": not a registry hostname'],
    ['a b.example', '--registry "a b.example": not a registry hostname'],
    ['a_b.example', '--registry "a_b.example": not a registry hostname'],
    ['[::1]:5000', '--registry "[::1]:5000": not a registry hostname'],
    ['a.example:0', '--registry "a.example:0": port out of range'],
    ['a.example:70000', '--registry "a.example:70000": port out of range'],
    ['myregistry', '--registry "myregistry": a registry hostname has a dot, a port or is localhost (image references read "myregistry/app" as docker.io/myregistry/app)']
  ]
  for (const [value, message] of refused) t.throws(() => parseRegistryHost(value), new ClientConfigUsageError(message), JSON.stringify(value))
})

t.test('proxy and server URLs: http(s) origins only', async (t) => {
  t.equal(parseOriginUrl('http://127.0.0.1:5000', '--proxy'), 'http://127.0.0.1:5000')
  t.equal(parseOriginUrl('HTTP://LOCALHOST:5000/', '--proxy'), 'http://localhost:5000')
  t.equal(parseOriginUrl('https://[::1]:5443', '--proxy'), 'https://[::1]:5443')
  t.equal(parseOriginUrl('https://ecr-proxy.internal:443', '--proxy'), 'https://ecr-proxy.internal', 'the default port is implied')
  const refused: Array<[string, string]> = [
    ['127.0.0.1:5000', '--proxy "127.0.0.1:5000": must be an http:// or https:// URL, e.g. http://127.0.0.1:5000'],
    ['localhost', '--proxy "localhost": must be an http:// or https:// URL, e.g. http://127.0.0.1:5000'],
    ['http://', '--proxy "http://": not a URL'],
    ['http://a b:5000', '--proxy "http://a b:5000": not a URL'],
    ['ftp://127.0.0.1', '--proxy "ftp://127.0.0.1": must be an http:// or https:// URL, e.g. http://127.0.0.1:5000'],
    ['http://u:p@127.0.0.1:5000', '--proxy "http://u:p@127.0.0.1:5000": no credentials in the URL'],
    ['http://127.0.0.1:5000/prefix', '--proxy "http://127.0.0.1:5000/prefix": scheme, host and port only (containerd adds /v2 itself)'],
    ['http://127.0.0.1:5000?x=1', '--proxy "http://127.0.0.1:5000?x=1": scheme, host and port only (containerd adds /v2 itself)'],
    ['http://127.0.0.1:5000#x', '--proxy "http://127.0.0.1:5000#x": scheme, host and port only (containerd adds /v2 itself)']
  ]
  for (const [value, message] of refused) t.throws(() => parseOriginUrl(value, '--proxy'), new ClientConfigUsageError(message), value)
  t.equal(registryServer('docker.io'), 'https://registry-1.docker.io')
  t.equal(registryServer(ECR), `https://${ECR}`)
})

t.test('k3s: registries.yaml mirrors each registry to the proxy', async (t) => {
  const text = k3sRegistries({ registries: [ECR, ECR2], proxy: PROXY })
  t.same(parse(text), { mirrors: { [ECR]: { endpoint: [PROXY] }, [ECR2]: { endpoint: [PROXY] } } })
  t.match(text, /^# k3s: \/etc\/rancher\/k3s\/registries\.yaml/)
  const tls = k3sRegistries({ registries: [ECR], proxy: 'https://ecr-proxy.internal:5443', ca: '/etc/ssl/proxy-ca.pem' })
  t.same(parse(tls), {
    mirrors: { [ECR]: { endpoint: ['https://ecr-proxy.internal:5443'] } },
    configs: { 'ecr-proxy.internal:5443': { tls: { ca_file: '/etc/ssl/proxy-ca.pem' } } }
  }, 'k3s keys TLS settings by the endpoint host')
  t.throws(() => k3sRegistries({ registries: [ECR], proxy: PROXY, ca: '/ca.pem' }), { message: '--ca is for an https:// proxy; this one is plain HTTP' })
})

t.test('kind: the containerd patch, alone or with the mounted hosts directory', async (t) => {
  t.equal(kindContainerdPatch(), '[plugins."io.containerd.grpc.v1.cri".registry]\n  config_path = "/etc/containerd/certs.d"\n')
  const plain = parse(kindClusterConfig())
  t.same(plain, { kind: 'Cluster', apiVersion: 'kind.x-k8s.io/v1alpha4', containerdConfigPatches: [kindContainerdPatch().trimEnd()] })
  t.match(kindClusterConfig(), /the DaemonSet \(deploy\/daemonset\) writes/)
  const text = kindClusterConfig({ hostsDir: '/home/me/certs.d', fillCommand: 'ecr-auth-proxy client-config containerd --registry a.b --dir /home/me/certs.d' })
  t.same(parse(text), {
    kind: 'Cluster',
    apiVersion: 'kind.x-k8s.io/v1alpha4',
    containerdConfigPatches: [kindContainerdPatch().trimEnd()],
    nodes: [{ role: 'control-plane', extraMounts: [{ hostPath: '/home/me/certs.d', containerPath: '/etc/containerd/certs.d', readOnly: true }] }]
  })
  t.match(text, /^# {3}ecr-auth-proxy client-config containerd --registry a\.b --dir \/home\/me\/certs\.d$/m)
  t.match(kindClusterConfig({ hostsDir: '/home/me/certs.d' }), /^# Every node reads the hosts\.toml files in \/home\/me\/certs\.d\n# The mount/m, 'without a command to name')
  t.throws(() => kindClusterConfig({ hostsDir: 'certs.d' }), { message: '--hosts-dir "certs.d": give an absolute path' })
})

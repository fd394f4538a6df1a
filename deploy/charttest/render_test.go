package charttest_test

import (
	"fmt"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/drplane/drplane/deploy/charttest"
)

// minimalValues are only the values the schema requires.
func minimalValues() map[string]any {
	account := func(user, secret string) map[string]any {
		return map[string]any{"mysql": map[string]any{"user": user, "existingSecret": secret}}
	}
	return map[string]any{
		"dc":   "dc-x",
		"city": "city-x",
		"etcd": map[string]any{"endpoints": []any{"http://etcd:2379"}},
		"nats": map[string]any{"url": "nats://nats:4222"},
		"coordinator": map[string]any{"auth": map[string]any{"tokens": []any{
			map[string]any{"name": "admin", "role": "admin", "sha256": strings.Repeat("ab", 32)},
		}}},
		"haagent":   account("agent", "agent-secret"),
		"reship":    account("reship", "reship-secret"),
		"collector": account("app", "app-secret"),
	}
}

func kindCounts(r *release) map[string]int {
	n := map[string]int{}
	for _, o := range r.objects {
		n[o.GVK.Kind]++
	}
	return n
}

func TestRenderThreeDCs(t *testing.T) {
	for _, dc := range exampleDCs() {
		t.Run(dc, func(t *testing.T) {
			r := renderExample(t, dc)
			es := dc == "dc-b1" // the example's DC with Elasticsearch
			pvcs := 1
			if es {
				pvcs = 0
			}
			assert.Equal(t, deleteZero(map[string]int{
				"Deployment": 4, "Secret": 2, "ConfigMap": 3, "Service": 4, "ServiceMonitor": 1,
				"NetworkPolicy": 4, "PodDisruptionBudget": 1, "ServiceAccount": 1, "PersistentVolumeClaim": pvcs,
			}), kindCounts(r))

			city := map[string]string{"dc-a1": "city-a", "dc-a2": "city-a", "dc-b1": "city-b"}[dc]
			for _, o := range r.objects {
				meta, ok := o.Obj.(interface{ GetLabels() map[string]string })
				require.True(t, ok)
				assert.Equal(t, dc, meta.GetLabels()["drplane.dev/dc"], o.Source)
				assert.Equal(t, city, meta.GetLabels()["drplane.dev/city"], o.Source)
				assert.Equal(t, r.name, meta.GetLabels()["app.kubernetes.io/instance"], o.Source)
			}
			for _, c := range components() {
				checkWorkload(t, r, c)
			}
			checkCoordinatorService(t, r)
			checkServiceMonitor(t, r)
			checkNetworkPolicies(t, r)

			co := r.deployment(t, "coordinator")
			if es {
				assert.EqualValues(t, 2, *co.Spec.Replicas)
				assert.NotEqual(t, appsv1.RecreateDeploymentStrategyType, co.Spec.Strategy.Type)
			} else {
				assert.EqualValues(t, 1, *co.Spec.Replicas)
				assert.Equal(t, appsv1.RecreateDeploymentStrategyType, co.Spec.Strategy.Type, "one pod owns the audit volume")
				vol := volume(t, co, "audit")
				require.NotNil(t, vol.PersistentVolumeClaim)
				assert.Equal(t, r.objectName("coordinator", "audit"), vol.PersistentVolumeClaim.ClaimName)
				_, ok := find[*corev1.PersistentVolumeClaim](r)[vol.PersistentVolumeClaim.ClaimName]
				assert.True(t, ok, "the claim is rendered")
			}
			pdb, ok := find[*policyv1.PodDisruptionBudget](r)[r.objectName("haagent", "")]
			require.True(t, ok)
			assert.Equal(t, 1, pdb.Spec.MinAvailable.IntValue())
			assert.True(t, selects(pdb.Spec.Selector.MatchLabels, r.deployment(t, "haagent").Spec.Template.Labels))
			assert.Contains(t, r.rel.Notes, dc)
		})
	}
}

func deleteZero(m map[string]int) map[string]int {
	for k, v := range m {
		if v == 0 {
			delete(m, k)
		}
	}
	return m
}

func selects(selector, podLabels map[string]string) bool {
	return len(selector) > 0 && labels.SelectorFromSet(selector).Matches(labels.Set(podLabels))
}

func volume(t *testing.T, d *appsv1.Deployment, name string) corev1.Volume {
	t.Helper()
	for _, v := range d.Spec.Template.Spec.Volumes {
		if v.Name == name {
			return v
		}
	}
	require.Failf(t, "no volume", "%s in %s", name, d.Name)
	return corev1.Volume{}
}

func port(t *testing.T, c corev1.Container, name string) corev1.ContainerPort {
	t.Helper()
	for _, p := range c.Ports {
		if p.Name == name {
			return p
		}
	}
	require.Failf(t, "no port", "%s in container %s", name, c.Name)
	return corev1.ContainerPort{}
}

// checkWorkload checks what every service's Deployment must have.
func checkWorkload(t *testing.T, r *release, component string) {
	t.Helper()
	d := r.deployment(t, component)
	pod := d.Spec.Template.Spec
	assert.True(t, selects(d.Spec.Selector.MatchLabels, d.Spec.Template.Labels), "%s selector matches its pods", component)
	assert.Equal(t, component, d.Spec.Selector.MatchLabels["app.kubernetes.io/component"])
	switch component {
	case "reship", "collector":
		assert.EqualValues(t, 1, *d.Spec.Replicas, "%s runs exactly one replica", component)
		assert.Equal(t, appsv1.RecreateDeploymentStrategyType, d.Spec.Strategy.Type, "%s never overlaps", component)
	case "haagent":
		assert.GreaterOrEqual(t, *d.Spec.Replicas, int32(2), "haagent runs a standby")
		require.NotNil(t, pod.Affinity)
		require.NotNil(t, pod.Affinity.PodAntiAffinity, "agents spread over nodes")
	}

	c := r.container(t, component)
	assert.Equal(t, component, c.Name)
	assert.Equal(t, "registry.example.com/drplane/"+component+":0.1.0-dev", c.Image)
	assert.Equal(t, []string{"--config", "/etc/drplane/config/config.yaml"}, c.Args)

	// The configuration file comes from the component's Secret or ConfigMap.
	_, kind := r.configText(t, component)
	cfgVol := volume(t, d, "config")
	switch kind {
	case "Secret":
		require.NotNil(t, cfgVol.Secret, component)
		assert.Equal(t, r.objectName(component, "config"), cfgVol.Secret.SecretName)
	default:
		require.NotNil(t, cfgVol.ConfigMap, component)
		assert.Equal(t, r.objectName(component, "config"), cfgVol.ConfigMap.Name)
	}
	assert.Contains(t, c.VolumeMounts, corev1.VolumeMount{Name: "config", MountPath: "/etc/drplane/config", ReadOnly: true})
	assert.NotEmpty(t, d.Spec.Template.Annotations["checksum/config"], "pods roll when the configuration changes")

	// Probes and /metrics on health_addr.
	health := port(t, c, "health")
	assert.EqualValues(t, 8080, health.ContainerPort)
	cfg := r.config(t, component)
	assert.Equal(t, "0.0.0.0:8080", cfg["health_addr"], "%s listens where the probes look", component)
	require.NotNil(t, c.LivenessProbe)
	require.NotNil(t, c.ReadinessProbe)
	assert.Equal(t, "/healthz", c.LivenessProbe.HTTPGet.Path)
	assert.Equal(t, "health", c.LivenessProbe.HTTPGet.Port.String())
	assert.Equal(t, "/readyz", c.ReadinessProbe.HTTPGet.Path)
	assert.Equal(t, "health", c.ReadinessProbe.HTTPGet.Port.String())
	assert.Greater(t, c.ReadinessProbe.TimeoutSeconds, int32(2), "/readyz may take 2 s per check")

	// Non-root, no escalation, read-only root.
	require.NotNil(t, pod.SecurityContext)
	require.NotNil(t, pod.SecurityContext.RunAsNonRoot)
	assert.True(t, *pod.SecurityContext.RunAsNonRoot)
	require.NotNil(t, pod.SecurityContext.RunAsUser)
	assert.NotZero(t, *pod.SecurityContext.RunAsUser)
	require.NotNil(t, c.SecurityContext)
	assert.False(t, *c.SecurityContext.AllowPrivilegeEscalation)
	assert.True(t, *c.SecurityContext.ReadOnlyRootFilesystem)
	assert.Equal(t, []corev1.Capability{"ALL"}, c.SecurityContext.Capabilities.Drop)
	require.NotNil(t, pod.EnableServiceLinks)
	assert.False(t, *pod.EnableServiceLinks, "no Service variables that look like DRPLANE_* keys")
	assert.Equal(t, r.name, pod.ServiceAccountName)

	// The process id is the pod's name; etcd TLS from the example's Secret.
	assert.Contains(t, c.Env, corev1.EnvVar{Name: "DRPLANE_ID", ValueFrom: &corev1.EnvVarSource{
		FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"},
	}})
	tls := volume(t, d, "etcd-tls")
	require.NotNil(t, tls.Secret)
	assert.Equal(t, "drplane-etcd-client-tls", tls.Secret.SecretName)
	assert.Equal(t, "/etc/drplane/etcd-tls/ca.crt", mustLookup(t, cfg, "etcd.tls.ca_file"))
	assert.Equal(t, "/etc/drplane/etcd-tls/tls.crt", mustLookup(t, cfg, "etcd.tls.cert_file"))
}

func mustLookup(t *testing.T, m map[string]any, path string) any {
	t.Helper()
	v, ok := lookup(m, path)
	require.True(t, ok, "key %s", path)
	return v
}

func checkCoordinatorService(t *testing.T, r *release) {
	t.Helper()
	svc, ok := find[*corev1.Service](r)[r.objectName("coordinator", "")]
	require.True(t, ok)
	assert.True(t, selects(svc.Spec.Selector, r.deployment(t, "coordinator").Spec.Template.Labels))
	got := map[string]string{}
	for _, p := range svc.Spec.Ports {
		got[p.Name] = fmt.Sprintf("%d->%s", p.Port, p.TargetPort.String())
	}
	assert.Equal(t, map[string]string{"grpc": "7700->grpc", "http": "7701->http", "metrics": "8080->health"}, got)
	c := r.container(t, "coordinator")
	assert.EqualValues(t, 7700, port(t, c, "grpc").ContainerPort)
	assert.EqualValues(t, 7701, port(t, c, "http").ContainerPort)
	cfg := r.config(t, "coordinator")
	assert.Equal(t, "0.0.0.0:7700", mustLookup(t, cfg, "api.grpc_addr"))
	assert.Equal(t, "0.0.0.0:7701", mustLookup(t, cfg, "api.http_addr"))
}

// checkServiceMonitor: the ServiceMonitor selects a Service with a metrics
// port for every component, each selecting that component's pods.
func checkServiceMonitor(t *testing.T, r *release) {
	t.Helper()
	sms := find[*monitoringv1.ServiceMonitor](r)
	require.Len(t, sms, 1)
	var sm *monitoringv1.ServiceMonitor
	for _, v := range sms {
		sm = v
	}
	assert.Equal(t, "prometheus", sm.Labels["release"])
	require.Len(t, sm.Spec.Endpoints, 1)
	assert.Equal(t, "metrics", sm.Spec.Endpoints[0].Port)
	assert.Equal(t, "/metrics", sm.Spec.Endpoints[0].Path)
	assert.Equal(t, []string{namespace}, sm.Spec.NamespaceSelector.MatchNames)
	covered := map[string]bool{}
	for _, svc := range find[*corev1.Service](r) {
		if !selects(sm.Spec.Selector.MatchLabels, svc.Labels) {
			continue
		}
		hasMetrics := false
		for _, p := range svc.Spec.Ports {
			hasMetrics = hasMetrics || (p.Name == "metrics" && p.TargetPort.String() == "health")
		}
		assert.True(t, hasMetrics, "%s has a metrics port", svc.Name)
		for _, c := range components() {
			if selects(svc.Spec.Selector, r.deployment(t, c).Spec.Template.Labels) {
				covered[c] = true
			}
		}
	}
	for _, c := range components() {
		assert.True(t, covered[c], "/metrics of %s is scraped", c)
	}
}

func checkNetworkPolicies(t *testing.T, r *release) {
	t.Helper()
	nps := find[*networkingv1.NetworkPolicy](r)
	for _, c := range components() {
		np, ok := nps[r.objectName(c, "")]
		require.True(t, ok, c)
		assert.True(t, selects(np.Spec.PodSelector.MatchLabels, r.deployment(t, c).Spec.Template.Labels))
		var ports []string
		for _, rule := range np.Spec.Ingress {
			for _, p := range rule.Ports {
				ports = append(ports, p.Port.String())
			}
		}
		want := []string{"health"}
		if c == "coordinator" {
			want = []string{"health", "grpc", "http"}
		}
		assert.Equal(t, want, ports, c)
	}
}

func TestRenderMinimalValues(t *testing.T) {
	r := render(t, "dc-x", minimalValues())
	assert.Equal(t, map[string]int{
		"Deployment": 4, "Secret": 2, "ConfigMap": 3, "Service": 1,
		"PodDisruptionBudget": 1, "ServiceAccount": 1, "PersistentVolumeClaim": 1,
	}, kindCounts(r), "optional objects are off by default")
	c := r.container(t, "reship")
	assert.Equal(t, "ghcr.io/drplane/reship:0.1.0-dev", c.Image, "the tag defaults to appVersion")
	cfg := r.config(t, "coordinator")
	assert.Equal(t, "embedded", mustLookup(t, cfg, "audit.store"))
	assert.Equal(t, "/var/lib/drplane/audit", mustLookup(t, cfg, "audit.dir"))
	_, tls := lookup(cfg, "etcd.tls")
	assert.False(t, tls, "no etcd TLS unless enabled")
	for _, comp := range components() {
		for _, v := range r.deployment(t, comp).Spec.Template.Spec.Volumes {
			assert.NotEqual(t, "etcd-tls", v.Name)
		}
	}
}

func TestRenderOptions(t *testing.T) {
	vals := minimalValues()
	for _, e := range []func(map[string]any){
		set("imagePullSecrets", []any{map[string]any{"name": "regcred"}}),
		set("image.tag", "1.2.3"),
		set("collector.image.repository", "mirror.example.com/collector"),
		set("haagent.replicas", 3),
		set("haagent.antiAffinity", "hard"),
		set("etcd.auth.username", "drplane"),
		set("etcd.auth.existingSecret", "etcd-pass"),
		set("coordinator.tls.enabled", true),
		set("coordinator.tls.existingSecret", "api-tls"),
		set("coordinator.tls.caKey", "ca.crt"),
		set("coordinator.audit.persistence.enabled", false),
		set("collector.mysql.database", "shop"),
		set("haagent.config.hooks.pre_failover", []any{[]any{"/hooks/page", "{dc}", "{cluster}"}}),
		set("networkPolicy.enabled", true),
		set("networkPolicy.apiFrom", []any{map[string]any{"namespaceSelector": map[string]any{"matchLabels": map[string]any{"team": "ops"}}}}),
	} {
		e(vals)
	}
	r := render(t, "dc-x", vals)
	for _, comp := range components() {
		d := r.deployment(t, comp)
		assert.Equal(t, []corev1.LocalObjectReference{{Name: "regcred"}}, d.Spec.Template.Spec.ImagePullSecrets)
		assert.Contains(t, r.container(t, comp).Env, secretEnv("DRPLANE_ETCD_PASSWORD", "etcd-pass", "password"))
		assert.Equal(t, "drplane", mustLookup(t, r.config(t, comp), "etcd.username"))
	}
	assert.Equal(t, "ghcr.io/drplane/reship:1.2.3", r.container(t, "reship").Image)
	assert.Equal(t, "mirror.example.com/collector:1.2.3", r.container(t, "collector").Image)
	ha := r.deployment(t, "haagent")
	assert.EqualValues(t, 3, *ha.Spec.Replicas)
	require.NotNil(t, ha.Spec.Template.Spec.Affinity.PodAntiAffinity)
	assert.Len(t, ha.Spec.Template.Spec.Affinity.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution, 1)
	hooks := mustLookup(t, r.config(t, "haagent"), "hooks.pre_failover")
	assert.Equal(t, []any{[]any{"/hooks/page", "{dc}", "{cluster}"}}, hooks)

	co := r.deployment(t, "coordinator")
	assert.NotNil(t, volume(t, co, "audit").EmptyDir, "no persistence: emptyDir")
	assert.NotEqual(t, appsv1.RecreateDeploymentStrategyType, co.Spec.Strategy.Type)
	assert.Equal(t, "api-tls", volume(t, co, "api-tls").Secret.SecretName)
	cfg := r.config(t, "coordinator")
	assert.Equal(t, "/etc/drplane/api-tls/tls.crt", mustLookup(t, cfg, "api.tls.cert_file"))
	assert.Equal(t, "/etc/drplane/api-tls/ca.crt", mustLookup(t, cfg, "api.tls.ca_file"))
	assert.Equal(t, "shop", mustLookup(t, r.config(t, "collector"), "mysql.database"))
	assert.Empty(t, find[*corev1.PersistentVolumeClaim](r))

	np := find[*networkingv1.NetworkPolicy](r)[r.objectName("coordinator", "")]
	require.NotNil(t, np)
	require.Len(t, np.Spec.Ingress, 2)
	assert.Empty(t, np.Spec.Ingress[0].From, "health port open to any source")
	require.Len(t, np.Spec.Ingress[1].From, 1, "API only from apiFrom")
	assert.Equal(t, map[string]string{"team": "ops"}, np.Spec.Ingress[1].From[0].NamespaceSelector.MatchLabels)
}

// TestLongReleaseName: names stay within Kubernetes' limits (Service names
// are DNS labels) whatever the release is called.
func TestLongReleaseName(t *testing.T) {
	vals := exampleValues(t, "dc-a1")
	rel, err := charttest.Render(charttest.ChartDir, vals, charttest.RenderOptions{
		ReleaseName: "drplane-" + strings.Repeat("very-long-", 4) + "dc-a1", Namespace: namespace,
	})
	require.NoError(t, err)
	dec, err := charttest.NewDecoder()
	require.NoError(t, err)
	objs, err := dec.DecodeManifest(rel.Manifest)
	require.NoError(t, err)
	names := map[string]bool{}
	for _, o := range objs {
		meta, ok := o.Obj.(interface{ GetName() string })
		require.True(t, ok)
		name := meta.GetName()
		limit := 253
		if _, svc := o.Obj.(*corev1.Service); svc {
			limit = 63
		}
		assert.LessOrEqual(t, len(name), limit, "%s %s", o.GVK.Kind, name)
		key := o.GVK.Kind + "/" + name
		assert.False(t, names[key], "%s is rendered twice", key)
		names[key] = true
	}
}

func secretEnv(name, secret, key string) corev1.EnvVar {
	return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
		LocalObjectReference: corev1.LocalObjectReference{Name: secret}, Key: key,
	}}}
}

// TestDecoderIsStrict proves the decoder the other tests rely on refuses
// what the API server would: unknown and duplicate fields, unknown kinds.
func TestDecoderIsStrict(t *testing.T) {
	dec, err := charttest.NewDecoder()
	require.NoError(t, err)
	good := `apiVersion: apps/v1
kind: Deployment
metadata:
  name: x
spec:
  replicas: 1
  selector:
    matchLabels: {app: x}
  template:
    metadata:
      labels: {app: x}
    spec:
      containers:
        - name: x
          image: x
`
	obj, gvk, err := dec.Decode([]byte(good))
	require.NoError(t, err)
	assert.Equal(t, "Deployment", gvk.Kind)
	assert.IsType(t, &appsv1.Deployment{}, obj)

	for name, doc := range map[string]string{
		"unknown field":       strings.Replace(good, "  replicas: 1\n", "  replicas: 1\n  replica: 2\n", 1),
		"misspelt nested key": strings.Replace(good, "image: x", "imagee: x", 1),
		"duplicate field":     strings.Replace(good, "  replicas: 1\n", "  replicas: 1\n  replicas: 2\n", 1),
		"unknown kind":        strings.Replace(good, "kind: Deployment", "kind: Deploymnet", 1),
	} {
		_, _, err := dec.Decode([]byte(doc))
		assert.ErrorIs(t, err, charttest.ErrDecode, name)
	}
	_, _, err = dec.Decode([]byte(strings.Replace(good, "  replicas: 1\n", "  replica: 2\n", 1)))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "strict decoding error")
	assert.Contains(t, err.Error(), `unknown field "spec.replica"`)
}

func TestSplitManifest(t *testing.T) {
	docs := charttest.SplitManifest("---\n# Source: a/x.yaml\n# only a comment\n---\n# Source: a/y.yaml\nkind: A\n---\nkind: B\n")
	require.Len(t, docs, 2)
	assert.Equal(t, "a/y.yaml", docs[0].Source)
	assert.Contains(t, docs[0].YAML, "kind: A")
	assert.Empty(t, docs[1].Source)
}

// Package helm checks examples/helm against the fluent/fluent-bit chart:
// `helm template` renders each variant of the values, every manifest is
// decoded strictly into its Kubernetes API type, and what the plugin relies
// on (image, init container, volumes, secret, workload identity, the
// Fluent Bit configuration) is checked in the result. It is its own module
// so that the Kubernetes API types stay out of the plugin's dependencies.
package helm

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"
)

const (
	release   = "msgraph"
	namespace = "logging"
	// Where the chart mounts its ConfigMap and where the images hold the
	// plugin.
	confDir    = "/fluent-bit/etc/conf"
	pluginPath = "/fluent-bit/plugins/in_msgraph.so"
	stateDir   = "/var/lib/fluent-bit"
	secretDir  = "/etc/fluent-bit"
)

func examples() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "examples", "helm")
}

// variant is one way of installing: the values files, in order.
type variant struct {
	name             string
	files            []string
	initContainer    bool
	workloadIdentity bool
}

var variants = []variant{
	{"client secret, plugin image", []string{"values.yaml"}, false, false},
	{"workload identity, plugin image", []string{"values.yaml", "workload-identity.yaml"}, false, true},
	{"client secret, init container", []string{"values.yaml", "init-container.yaml"}, true, false},
	{"workload identity, init container", []string{"values.yaml", "init-container.yaml", "workload-identity.yaml"}, true, true},
}

// TestHelmValues renders every variant with the chart named by
// MSGRAPH_HELM_CHART (a directory, e.g. charts/fluent-bit of
// fluent/helm-charts) and checks the manifests.
func TestHelmValues(t *testing.T) {
	bin, err := exec.LookPath("helm")
	if err != nil {
		t.Skip("no helm on PATH (go install helm.sh/helm/v3/cmd/helm@v3.22.0): examples/helm is not rendered")
	}
	chart := os.Getenv("MSGRAPH_HELM_CHART")
	if chart == "" {
		t.Skip("MSGRAPH_HELM_CHART is not set (the directory of the fluent/fluent-bit chart): examples/helm is not rendered")
	}
	if _, err := os.Stat(filepath.Join(chart, "Chart.yaml")); err != nil {
		t.Fatalf("MSGRAPH_HELM_CHART: %v", err)
	}
	claim := pvcName(t)
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			args := []string{"template", release, chart, "--namespace", namespace}
			for _, f := range v.files {
				args = append(args, "-f", filepath.Join(examples(), f))
			}
			var stderr bytes.Buffer
			cmd := exec.Command(bin, args...)
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
			}
			m := decodeAll(t, out)
			checkVariant(t, v, m, claim)
		})
	}
}

// TestHelmPVC decodes examples/helm/pvc.yaml strictly.
func TestHelmPVC(t *testing.T) {
	pvcName(t)
}

func pvcName(t *testing.T) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(examples(), "pvc.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var pvc corev1.PersistentVolumeClaim
	if err := yaml.UnmarshalStrict(raw, &pvc); err != nil {
		t.Fatalf("pvc.yaml: %v", err)
	}
	if pvc.Kind != "PersistentVolumeClaim" || pvc.APIVersion != "v1" {
		t.Fatalf("pvc.yaml is a %s %s", pvc.APIVersion, pvc.Kind)
	}
	checkName(t, "pvc.yaml", pvc.ObjectMeta)
	if !slices.Contains(pvc.Spec.AccessModes, corev1.ReadWriteOnce) {
		t.Errorf("pvc.yaml access modes %v", pvc.Spec.AccessModes)
	}
	if q := pvc.Spec.Resources.Requests[corev1.ResourceStorage]; q.IsZero() {
		t.Error("pvc.yaml requests no storage")
	}
	return pvc.Name
}

// manifests are the rendered objects by kind.
type manifests struct {
	deployments     []*appsv1.Deployment
	daemonSets      []*appsv1.DaemonSet
	configMaps      []*corev1.ConfigMap
	services        []*corev1.Service
	serviceAccounts []*corev1.ServiceAccount
	other           []string
}

// decodeAll decodes each document of a `helm template` output into its
// API type, failing on any field the type does not have.
func decodeAll(t *testing.T, out []byte) *manifests {
	t.Helper()
	m := &manifests{}
	for i, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(out), -1) {
		if strings.TrimSpace(regexp.MustCompile(`(?m)^#.*$`).ReplaceAllString(doc, "")) == "" {
			continue
		}
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
			t.Fatalf("document %d: %v\n%s", i, err, doc)
		}
		var obj any
		var meta *metav1.ObjectMeta
		switch tm.APIVersion + " " + tm.Kind {
		case "apps/v1 Deployment":
			o := &appsv1.Deployment{}
			m.deployments, obj, meta = append(m.deployments, o), o, &o.ObjectMeta
		case "apps/v1 DaemonSet":
			o := &appsv1.DaemonSet{}
			m.daemonSets, obj, meta = append(m.daemonSets, o), o, &o.ObjectMeta
		case "v1 ConfigMap":
			o := &corev1.ConfigMap{}
			m.configMaps, obj, meta = append(m.configMaps, o), o, &o.ObjectMeta
		case "v1 Service":
			o := &corev1.Service{}
			m.services, obj, meta = append(m.services, o), o, &o.ObjectMeta
		case "v1 ServiceAccount":
			o := &corev1.ServiceAccount{}
			m.serviceAccounts, obj, meta = append(m.serviceAccounts, o), o, &o.ObjectMeta
		case "rbac.authorization.k8s.io/v1 ClusterRole":
			o := &rbacv1.ClusterRole{}
			m.other, obj, meta = append(m.other, tm.Kind), o, &o.ObjectMeta
		case "rbac.authorization.k8s.io/v1 ClusterRoleBinding":
			o := &rbacv1.ClusterRoleBinding{}
			m.other, obj, meta = append(m.other, tm.Kind), o, &o.ObjectMeta
		case "v1 Pod":
			o := &corev1.Pod{}
			m.other, obj, meta = append(m.other, tm.Kind), o, &o.ObjectMeta
		default:
			t.Fatalf("document %d is a %s %s, which this test has no schema for:\n%s", i, tm.APIVersion, tm.Kind, doc)
		}
		if err := yaml.UnmarshalStrict([]byte(doc), obj); err != nil {
			t.Fatalf("%s: %v\n%s", tm.Kind, err, doc)
		}
		checkName(t, tm.Kind, *meta)
	}
	return m
}

func checkName(t *testing.T, what string, meta metav1.ObjectMeta) {
	t.Helper()
	for _, e := range validation.IsDNS1123Subdomain(meta.Name) {
		t.Errorf("%s name %q: %s", what, meta.Name, e)
	}
	for k, v := range meta.Labels {
		for _, e := range append(validation.IsQualifiedName(k), validation.IsValidLabelValue(v)...) {
			t.Errorf("%s label %s=%s: %s", what, k, v, e)
		}
	}
}

func checkVariant(t *testing.T, v variant, m *manifests, claim string) {
	if len(m.deployments) != 1 || len(m.daemonSets) != 0 {
		t.Fatalf("%d Deployments and %d DaemonSets, want one Deployment: one collector per tenant", len(m.deployments), len(m.daemonSets))
	}
	if len(m.other) != 0 {
		t.Errorf("also rendered %v: the plugin needs no Kubernetes API access and no test pod", m.other)
	}
	d := m.deployments[0]
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 1 {
		t.Errorf("replicas %v, want 1: two collectors would share one state volume", d.Spec.Replicas)
	}
	if d.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
		t.Errorf("strategy %q, want Recreate: a rolling update would start a second pod on the locked state file", d.Spec.Strategy.Type)
	}
	pod := d.Spec.Template.Spec
	checkPodRefs(t, pod)
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers", len(pod.Containers))
	}
	c := pod.Containers[0]

	// The image and where the plugin comes from.
	switch {
	case v.initContainer:
		if !strings.HasPrefix(c.Image, "cr.fluentbit.io/fluent/fluent-bit:") {
			t.Errorf("image %q, want the official image", c.Image)
		}
		if len(pod.InitContainers) != 1 {
			t.Fatalf("%d init containers", len(pod.InitContainers))
		}
		ic := pod.InitContainers[0]
		dir := mountOf(t, ic, "plugins")
		if got := mountOf(t, c, "plugins"); got != dir || dir != path.Dir(pluginPath) {
			t.Errorf("plugins volume at %q in the init container and %q in Fluent Bit, want %s", dir, got, path.Dir(pluginPath))
		}
		if !slices.Contains(ic.Command, pluginPath) {
			t.Errorf("the init container's command %v does not write %s", ic.Command, pluginPath)
		}
		if vol := volume(t, pod, "plugins"); vol.EmptyDir == nil {
			t.Error("the plugins volume is not an emptyDir")
		}
	default:
		if strings.Contains(c.Image, "fluent/fluent-bit") || len(pod.InitContainers) != 0 {
			t.Errorf("image %q with %d init containers, want the plugin's image alone", c.Image, len(pod.InitContainers))
		}
	}

	// State on the persistent volume.
	if vol := volume(t, pod, "state"); vol.PersistentVolumeClaim == nil || vol.PersistentVolumeClaim.ClaimName != claim {
		t.Errorf("state volume %+v, want the claim %s of pvc.yaml", vol.VolumeSource, claim)
	}
	if got := mountOf(t, c, "state"); got != stateDir {
		t.Errorf("state mounted at %q, want %s", got, stateDir)
	}

	// Resources.
	want := map[string]string{"requests.cpu": "50m", "requests.memory": "64Mi", "limits.memory": "200Mi"}
	got := map[string]resource.Quantity{
		"requests.cpu": c.Resources.Requests[corev1.ResourceCPU], "requests.memory": c.Resources.Requests[corev1.ResourceMemory],
		"limits.memory": c.Resources.Limits[corev1.ResourceMemory],
	}
	for k, w := range want {
		if q := got[k]; q.Cmp(resource.MustParse(w)) != 0 {
			t.Errorf("%s = %s, want %s", k, q.String(), w)
		}
	}

	// The Fluent Bit configuration the chart renders.
	if len(m.configMaps) != 1 {
		t.Fatalf("%d ConfigMaps", len(m.configMaps))
	}
	cm := m.configMaps[0]
	if got := mountOf(t, c, "config"); got != confDir {
		t.Errorf("configuration at %q, want %s", got, confDir)
	}
	if !slices.Contains(c.Args, "--config="+confDir+"/fluent-bit.conf") {
		t.Errorf("args %v do not start fluent-bit.conf from the ConfigMap", c.Args)
	}
	conf := cm.Data["fluent-bit.conf"]
	input := section(t, conf, "INPUT")
	if input["name"] != "msgraph" {
		t.Fatalf("the input is %q:\n%s", input["name"], conf)
	}
	pf := section(t, conf, "SERVICE")["plugins_file"]
	if path.Dir(pf) != confDir || cm.Data[path.Base(pf)] == "" {
		t.Fatalf("Plugins_File %q is not a file of the ConfigMap", pf)
	}
	if p := section(t, cm.Data[path.Base(pf)], "PLUGINS")["path"]; p != pluginPath {
		t.Errorf("plugins.conf loads %q, want %s", p, pluginPath)
	}
	if !strings.HasPrefix(input["db"], stateDir+"/") {
		t.Errorf("Db %q is not on the state volume", input["db"])
	}
	if input["storage.type"] == "filesystem" && !strings.HasPrefix(section(t, conf, "SERVICE")["storage.path"], stateDir+"/") {
		t.Error("storage.path is not on the state volume")
	}
	if !strings.Contains(conf, "rewrite_tag") {
		t.Error("health records are not routed")
	}

	// Metrics: the input's metrics_listen port is a container port and a
	// service port.
	_, port, _ := strings.Cut(input["metrics_listen"], ":")
	if port == "" {
		t.Error("no Metrics_Listen")
	}
	var cport *corev1.ContainerPort
	for i := range c.Ports {
		if fmt.Sprint(c.Ports[i].ContainerPort) == port {
			cport = &c.Ports[i]
		}
	}
	if cport == nil {
		t.Errorf("no container port %s for the plugin's metrics", port)
	} else if len(m.services) != 1 || !slices.ContainsFunc(m.services[0].Spec.Ports, func(p corev1.ServicePort) bool {
		return p.TargetPort.String() == cport.Name
	}) {
		t.Errorf("no service port for %s", cport.Name)
	}

	// Credentials.
	if len(m.serviceAccounts) != 1 || pod.ServiceAccountName != m.serviceAccounts[0].Name {
		t.Fatalf("the pod's service account %q is not the one rendered", pod.ServiceAccountName)
	}
	sa := m.serviceAccounts[0]
	if v.workloadIdentity {
		if input["auth"] != "workload_identity" {
			t.Errorf("auth %q", input["auth"])
		}
		if id := sa.Annotations["azure.workload.identity/client-id"]; id == "" {
			t.Error("the service account has no azure.workload.identity/client-id annotation")
		}
		if d.Spec.Template.Labels["azure.workload.identity/use"] != "true" {
			t.Error(`the pod has no label azure.workload.identity/use: "true"`)
		}
		if input["client_secret_file"] != "" || input["client_secret"] != "" {
			t.Error("a client secret is configured with workload identity")
		}
	} else {
		f := input["client_secret_file"]
		vol := volume(t, pod, "msgraph-client-secret")
		if vol.Secret == nil {
			t.Fatal("the client secret volume is not a Secret")
		}
		if dir := mountOf(t, c, "msgraph-client-secret"); path.Dir(f) != dir {
			t.Errorf("Client_Secret_File %q is not in the secret's mount %q", f, dir)
		}
		for _, vm := range c.VolumeMounts {
			if vm.Name == "msgraph-client-secret" && vm.SubPath != "" {
				t.Error("the secret is mounted with subPath: a rotated secret would never reach the file")
			}
		}
		env := map[string]bool{}
		for _, e := range c.Env {
			env[e.Name] = e.Value != ""
		}
		for _, k := range regexp.MustCompile(`\$\{(\w+)\}`).FindAllStringSubmatch(conf, -1) {
			if !env[k[1]] {
				t.Errorf("the configuration reads ${%s}, which the container's env does not set", k[1])
			}
		}
	}
	dryRun(t, cm)
}

// checkPodRefs checks what the API server would refuse or the kubelet
// fail on: mounts of volumes that do not exist, invalid port names.
func checkPodRefs(t *testing.T, pod corev1.PodSpec) {
	t.Helper()
	vols := map[string]bool{}
	for _, v := range pod.Volumes {
		if vols[v.Name] {
			t.Errorf("volume %s twice", v.Name)
		}
		vols[v.Name] = true
	}
	for _, c := range append(slices.Clone(pod.InitContainers), pod.Containers...) {
		if c.Name == "" || c.Image == "" {
			t.Errorf("container %q with image %q", c.Name, c.Image)
		}
		for _, m := range c.VolumeMounts {
			if !vols[m.Name] {
				t.Errorf("container %s mounts the volume %s, which the pod does not have", c.Name, m.Name)
			}
		}
		for _, p := range c.Ports {
			for _, e := range validation.IsValidPortName(p.Name) {
				t.Errorf("port name %q: %s", p.Name, e)
			}
		}
	}
}

func volume(t *testing.T, pod corev1.PodSpec, name string) corev1.Volume {
	t.Helper()
	for _, v := range pod.Volumes {
		if v.Name == name {
			return v
		}
	}
	t.Fatalf("the pod has no volume %s", name)
	return corev1.Volume{}
}

func mountOf(t *testing.T, c corev1.Container, name string) string {
	t.Helper()
	for _, m := range c.VolumeMounts {
		if m.Name == name {
			return m.MountPath
		}
	}
	t.Errorf("container %s does not mount %s", c.Name, name)
	return ""
}

// section returns the keys (lower case) and values of the first [NAME]
// section of a classic Fluent Bit configuration.
func section(t *testing.T, conf, name string) map[string]string {
	t.Helper()
	out := map[string]string{}
	in := false
	for _, line := range strings.Split(conf, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "["):
			if in {
				return out
			}
			in = strings.EqualFold(line, "["+name+"]")
		case in && line != "" && !strings.HasPrefix(line, "#"):
			k, v, _ := strings.Cut(line, " ")
			out[strings.ToLower(k)] = strings.TrimSpace(v)
		}
	}
	if !in {
		t.Fatalf("no [%s] section in\n%s", name, conf)
	}
	return out
}

// dryRun has Fluent Bit check the rendered configuration (--dry-run), the
// ConfigMap's files in a temporary directory and the plugin path pointed
// at the built object, when both are at hand.
func dryRun(t *testing.T, cm *corev1.ConfigMap) {
	t.Helper()
	bin := os.Getenv("FLUENT_BIT")
	if bin == "" {
		bin, _ = exec.LookPath("fluent-bit")
	}
	so := os.Getenv("MSGRAPH_PLUGIN")
	if bin == "" || so == "" {
		t.Log("the rendered configuration is not checked by Fluent Bit: set FLUENT_BIT (or put fluent-bit on PATH) and MSGRAPH_PLUGIN")
		return
	}
	if !filepath.IsAbs(so) {
		so = filepath.Join(examples(), "..", "..", so)
	}
	dir := t.TempDir()
	r := strings.NewReplacer(confDir, dir, pluginPath, so)
	for name, data := range cm.Data {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(r.Replace(data)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(bin, "--dry-run", "-c", filepath.Join(dir, "fluent-bit.conf"))
	cmd.Env = append(os.Environ(), "MSGRAPH_TENANT_ID=contoso.onmicrosoft.com", "MSGRAPH_CLIENT_ID=00000000-0000-0000-0000-000000000000")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "configuration test is successful") {
		t.Errorf("fluent-bit --dry-run on the rendered configuration: %v\n%s", err, out)
	}
}

// Package charttest renders drplane's Helm chart (deploy/helm/drplane) with
// Helm's own library, the way `helm install --dry-run` does without a
// cluster, and decodes every rendered object strictly with client-go's
// scheme. Its tests lint the chart, render the three-DC example of
// deploy/helm/examples, and check the objects and the services'
// configuration files the chart writes.
//
// The package is its own Go module, outside the workspace: Helm's
// Kubernetes dependencies need a newer etcd than the one drplane pins.
package charttest

{{/* prometheus.yml of the bundled Prometheus. */}}
{{- define "viz.prometheus-config" -}}
{{- $c := .Values.prometheus }}
{{- $ns := .Release.Namespace }}
global:
  {{- toYaml $c.globalConfig | trim | nindent 2 }}
rule_files:
  - /etc/prometheus/*_rules.yml
  - /etc/prometheus/*_rules.yaml
scrape_configs:
  - job_name: 'prometheus'
    static_configs:
      - targets: ['localhost:9090']

  # Scrape the control plane and viz components' admin-http ports.
  - job_name: 'linkerd-controller'
    kubernetes_sd_configs:
      - role: pod
        namespaces:
          names:
            - '{{ .Values.linkerdNamespace }}'
            - '{{ $ns }}'
    relabel_configs:
      - source_labels:
          - __meta_kubernetes_pod_container_port_name
        action: keep
        regex: admin-http
      - source_labels: [__meta_kubernetes_pod_container_name]
        action: replace
        target_label: component

  # Scrape every meshed proxy's linkerd-admin port.
  - job_name: 'linkerd-proxy'
    kubernetes_sd_configs:
      - role: pod
    relabel_configs:
      - source_labels:
          - __meta_kubernetes_pod_container_name
          - __meta_kubernetes_pod_container_port_name
          - __meta_kubernetes_pod_label_linkerd_io_control_plane_ns
        action: keep
        regex: ^linkerd-proxy;linkerd-admin;{{ .Values.linkerdNamespace }}$
      - source_labels: [__meta_kubernetes_namespace]
        action: replace
        target_label: namespace
      - source_labels: [__meta_kubernetes_pod_name]
        action: replace
        target_label: pod
      - action: labelmap
        regex: __meta_kubernetes_pod_label_linkerd_io_proxy_(.+)
      - action: labelmap
        regex: __meta_kubernetes_pod_label_(.+)
        replacement: __tmp_pod_label_$1
  {{- with $c.scrapeConfigs }}
  {{- toYaml . | trim | nindent 2 }}
  {{- end }}
{{- with $c.remoteWrite }}
remote_write:
  {{- toYaml . | trim | nindent 2 }}
{{- end }}
{{- end -}}

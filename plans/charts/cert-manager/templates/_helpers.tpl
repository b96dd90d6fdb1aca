{{/* Namespace of every namespaced object: .Values.namespace or the release namespace. */}}
{{- define "cert-manager.namespace" -}}
{{- default .Release.Namespace .Values.namespace -}}
{{- end -}}

{{- define "cert-manager.fullname" -}}cert-manager{{- end -}}
{{- define "cainjector.fullname" -}}cert-manager-cainjector{{- end -}}
{{- define "webhook.fullname" -}}cert-manager-webhook{{- end -}}
{{- define "startupapicheck.fullname" -}}cert-manager-startupapicheck{{- end -}}

{{- define "cert-manager.serviceAccountName" -}}
{{- default "cert-manager" .Values.serviceAccount.name -}}
{{- end -}}
{{- define "cainjector.serviceAccountName" -}}
{{- default "cert-manager-cainjector" .Values.cainjector.serviceAccount.name -}}
{{- end -}}
{{- define "webhook.serviceAccountName" -}}
{{- default "cert-manager-webhook" .Values.webhook.serviceAccount.name -}}
{{- end -}}
{{- define "startupapicheck.serviceAccountName" -}}
{{- default "cert-manager-startupapicheck" .Values.startupapicheck.serviceAccount.name -}}
{{- end -}}

{{/* True when the CRDs are part of the release (crds.enabled or the legacy installCRDs). */}}
{{- define "cert-manager.crd-check" -}}
{{- if or .Values.crds.enabled .Values.installCRDs -}}true{{- end -}}
{{- end -}}

{{/* image: (tuple imageValues appVersion) */}}
{{- define "image" -}}
{{- $image := index . 0 -}}
{{- $default := index . 1 -}}
{{- printf "%s:%s" $image.repository (default $default $image.tag) -}}
{{- end -}}

{{/* Labels shared by every object; call with the root context. */}}
{{- define "labels" -}}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- with .Values.global.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Labels of one component: (dict "root" $ "name" "webhook" "component" "webhook") */}}
{{- define "component.labels" -}}
app: {{ .name }}
app.kubernetes.io/name: {{ .name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component | quote }}
{{ include "labels" .root }}
{{- end -}}

{{- define "component.selector" -}}
app.kubernetes.io/name: {{ .name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component | quote }}
{{- end -}}

{{/* Labels and annotations of every CRD. */}}
{{- define "crd.metadata" -}}
labels:
  app: cert-manager
  app.kubernetes.io/name: cert-manager
  app.kubernetes.io/instance: {{ .Release.Name }}
  app.kubernetes.io/component: "crds"
  {{- include "labels" . | nindent 2 }}
{{- if .Values.crds.keep }}
annotations:
  helm.sh/resource-policy: keep
{{- end }}
{{- end -}}

{{/* The status.conditions schema shared by the cert-manager kinds. */}}
{{- define "crd.schema.conditions" -}}
conditions:
  description: List of status conditions to indicate the status of the resource.
  type: array
  items:
    description: A condition of the resource.
    type: object
    required:
      - status
      - type
    properties:
      lastTransitionTime:
        description: LastTransitionTime is the timestamp corresponding to the last status change of this condition.
        type: string
        format: date-time
      message:
        description: Message is a human readable description of the details of the last transition.
        type: string
      observedGeneration:
        description: The .metadata.generation that the condition was set based upon.
        type: integer
        format: int64
      reason:
        description: Reason is a brief machine readable explanation for the condition's last transition.
        type: string
      status:
        description: Status of the condition, one of (`True`, `False`, `Unknown`).
        type: string
        enum:
          - "True"
          - "False"
          - Unknown
      type:
        description: Type of the condition, known values are (`Ready`, `Issuing`, `InvalidRequest`, `Approved`, `Denied`).
        type: string
  x-kubernetes-list-map-keys:
    - type
  x-kubernetes-list-type: map
{{- end -}}

{{/* The issuerRef schema shared by Certificate, CertificateRequest, Order and Challenge. */}}
{{- define "crd.schema.issuerRef" -}}
issuerRef:
  description: Reference to the issuer responsible for issuing the certificate.
  type: object
  required:
    - name
  properties:
    group:
      description: Group of the resource being referred to.
      type: string
    kind:
      description: Kind of the resource being referred to.
      type: string
    name:
      description: Name of the resource being referred to.
      type: string
{{- end -}}

{{/* The key usages cert-manager accepts. */}}
{{- define "crd.schema.usages" -}}
usages:
  description: Requested key usages and extended key usages.
  type: array
  items:
    description: KeyUsage specifies valid usage contexts for keys.
    type: string
    enum:
      - signing
      - digital signature
      - content commitment
      - key encipherment
      - key agreement
      - data encipherment
      - cert sign
      - crl sign
      - encipher only
      - decipher only
      - any
      - server auth
      - client auth
      - code signing
      - email protection
      - s/mime
      - ipsec end system
      - ipsec tunnel
      - ipsec user
      - timestamping
      - ocsp signing
      - microsoft sgc
      - netscape sgc
{{- end -}}

{{/* The Issuer and ClusterIssuer spec. */}}
{{- define "crd.schema.issuerSpec" -}}
spec:
  description: Desired state of the Issuer resource.
  type: object
  properties:
    acme:
      description: ACME configures this issuer to communicate with a RFC8555 (ACME) server.
      type: object
      x-kubernetes-preserve-unknown-fields: true
    ca:
      description: CA configures this issuer to sign certificates using a signing CA keypair stored in a Secret resource.
      type: object
      required:
        - secretName
      properties:
        crlDistributionPoints:
          type: array
          items:
            type: string
        issuingCertificateURLs:
          type: array
          items:
            type: string
        ocspServers:
          type: array
          items:
            type: string
        secretName:
          description: SecretName is the name of the secret used to sign Certificates issued by this Issuer.
          type: string
    selfSigned:
      description: SelfSigned configures this issuer to 'self sign' certificates using the private key used to create the CertificateRequest object.
      type: object
      properties:
        crlDistributionPoints:
          type: array
          items:
            type: string
    vault:
      description: Vault configures this issuer to sign certificates using a HashiCorp Vault PKI backend.
      type: object
      x-kubernetes-preserve-unknown-fields: true
    venafi:
      description: Venafi configures this issuer to sign certificates using a Venafi TPP or Venafi Cloud policy zone.
      type: object
      x-kubernetes-preserve-unknown-fields: true
status:
  description: Status of the Issuer. This is set and managed automatically.
  type: object
  properties:
    acme:
      description: ACME specific status options.
      type: object
      properties:
        lastPrivateKeyHash:
          type: string
        lastRegisteredEmail:
          type: string
        uri:
          type: string
    {{- include "crd.schema.conditions" . | nindent 4 }}
{{- end -}}

{{- define "crd.printer.issuer" -}}
additionalPrinterColumns:
  - jsonPath: .status.conditions[?(@.type=="Ready")].status
    name: Ready
    type: string
  - jsonPath: .status.conditions[?(@.type=="Ready")].message
    name: Status
    priority: 1
    type: string
  - description: CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.
    jsonPath: .metadata.creationTimestamp
    name: Age
    type: date
{{- end -}}

// Alerts for the two ways SMS work silently piles up:
// 1. a message lands in a `-poison` queue (the Functions host gave up on it after
//    maxDequeueCount attempts);
// 2. delivery reports back up: processed late, piling up in storage, or never reaching the
//    queue (Event Grid dead-letters or drops them).
// Azure Monitor's storage queue metrics are per account, not per queue, and capacity metrics
// are hourly, so per-queue signals come from the host's own telemetry in Application Insights
// (log search alerts); the account-wide metric is the backstop for a consumer that stopped.
// Limitations and how to inspect a poison queue: docs/deploy.md.
param namePrefix string
param location string
param tags object
param alertEmail string
param applicationInsightsName string
param storageAccountName string
param systemTopicName string
param deliveryReportLagMinutes int
param queueBacklogThreshold int

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' existing = {
  parent: storage
  name: 'default'
}

resource systemTopic 'Microsoft.EventGrid/systemTopics@2025-02-15' existing = {
  name: systemTopicName
}

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = if (!empty(alertEmail)) {
  name: 'ag-sms-${namePrefix}'
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'sms-alerts'
    enabled: true
    emailReceivers: [
      {
        name: 'operator'
        emailAddress: alertEmail
        useCommonAlertSchema: true
      }
    ]
  }
}

var actionGroupIds = empty(alertEmail) ? [] : [actionGroup.id]
var metricAlertActions = empty(alertEmail) ? [] : [
  {
    actionGroupId: actionGroup.id
  }
]

// The host logs "Message has reached MaxDequeueCount of N. Moving message to queue
// '<queue>-poison'." (a Warning) each time it poisons a message: one alert per queue.
resource poisonQueue 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'sqr-sms-poison-${namePrefix}'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'SMS: message moved to a poison queue'
    description: 'A queue message failed maxDequeueCount times and was moved to <queue>-poison. Inspect it (docs/deploy.md, "Poison queues") and re-queue or discard it.'
    severity: 1
    enabled: true
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    scopes: [
      applicationInsights.id
    ]
    criteria: {
      allOf: [
        {
          query: 'traces | where message has "MaxDequeueCount" and message has "-poison" | extend queue = extract(@"queue \'([^\']+-poison)\'", 1, message) | where isnotempty(queue) | project timestamp, queue'
          timeAggregation: 'Count'
          dimensions: [
            {
              name: 'queue'
              operator: 'Include'
              values: [
                '*'
              ]
            }
          ]
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: false
    actions: {
      actionGroups: actionGroupIds
    }
  }
}

// Each queue-triggered run logs "Trigger Details: MessageId: ..., DequeueCount: n,
// InsertionTime: <when the message was queued>": the gap to the run is the backlog a delivery
// report waited through.
resource deliveryReportLag 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'sqr-sms-dlr-lag-${namePrefix}'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'SMS: delivery reports are processed late'
    description: 'The delivery_report function is running behind the sms-delivery-reports queue by more than ${deliveryReportLagMinutes} minutes.'
    severity: 2
    enabled: true
    evaluationFrequency: 'PT15M'
    windowSize: 'PT15M'
    scopes: [
      applicationInsights.id
    ]
    criteria: {
      allOf: [
        {
          query: 'traces | where tostring(customDimensions.Category) == "Function.delivery_report" and message startswith "Trigger Details:" | extend inserted = todatetime(extract(@"InsertionTime: ([^,]+)", 1, message)) | where isnotnull(inserted) | extend lagMinutes = datetime_diff("minute", timestamp, inserted) | project timestamp, lagMinutes'
          timeAggregation: 'Maximum'
          metricMeasureColumn: 'lagMinutes'
          operator: 'GreaterThan'
          threshold: deliveryReportLagMinutes
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: actionGroupIds
    }
  }
}

// Backstop when nothing is processed at all (no telemetry to measure a lag from): messages
// waiting in the account's queues. Account-wide and hourly (Azure Monitor capacity metric).
resource queueBacklog 'Microsoft.Insights/metricAlerts@2018-03-01' = {
  name: 'ma-sms-queue-backlog-${namePrefix}'
  location: 'global'
  tags: tags
  properties: {
    description: 'More than ${queueBacklogThreshold} messages wait in the storage account queues (sms-delivery-reports, sms-outbound, ... together).'
    severity: 2
    enabled: true
    scopes: [
      queueService.id
    ]
    evaluationFrequency: 'PT1H'
    windowSize: 'PT1H'
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
      allOf: [
        {
          criterionType: 'StaticThresholdCriterion'
          name: 'QueueMessageCount'
          metricNamespace: 'Microsoft.Storage/storageAccounts/queueServices'
          metricName: 'QueueMessageCount'
          timeAggregation: 'Average'
          operator: 'GreaterThan'
          threshold: queueBacklogThreshold
        }
      ]
    }
    autoMitigate: true
    actions: metricAlertActions
  }
}

// Delivery reports (and inbound SMS) that Event Grid could not deliver after its retries
// (dead-lettered into the eventgrid-deadletter container) or had to drop: one alert each.
var eventGridFailureMetrics = [
  {
    key: 'deadletter'
    metric: 'DeadLetteredCount'
    what: 'dead-lettered (they wait in the eventgrid-deadletter container)'
  }
  {
    key: 'dropped'
    metric: 'DroppedEventCount'
    what: 'dropped (lost: no dead-letter destination accepted them)'
  }
]

resource eventGridFailures 'Microsoft.Insights/metricAlerts@2018-03-01' = [
  for failure in eventGridFailureMetrics: {
    name: 'ma-sms-eventgrid-${failure.key}-${namePrefix}'
    location: 'global'
    tags: tags
    properties: {
      description: 'Event Grid ${failure.what} ACS events: delivery reports or inbound SMS that never reached the app.'
      severity: 1
      enabled: true
      scopes: [
        systemTopic.id
      ]
      evaluationFrequency: 'PT5M'
      windowSize: 'PT15M'
      criteria: {
        'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
        allOf: [
          {
            criterionType: 'StaticThresholdCriterion'
            name: failure.metric
            metricNamespace: 'Microsoft.EventGrid/systemTopics'
            metricName: failure.metric
            timeAggregation: 'Total'
            operator: 'GreaterThan'
            threshold: 0
          }
        ]
      }
      autoMitigate: true
      actions: metricAlertActions
    }
  }
]

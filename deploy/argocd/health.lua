-- Argo CD health check for align.dev/AlignmentJob (resource.customizations.health.align.dev_AlignmentJob).
-- Runs in Argo CD's Lua 5.1 sandbox: `obj` is the live object, the script returns {status, message}.
-- Phases come from align_api.constants.Phase; tests/unit/test_argocd_health.py covers every one of them.
local hs = {}

local function progress(status)
  local p = status.progress
  if p == nil or p.step == nil then
    return ""
  end
  local text = " (step " .. tostring(p.step)
  if p.totalSteps ~= nil then
    text = text .. "/" .. tostring(p.totalSteps)
  end
  if p.percent ~= nil then
    text = text .. string.format(", %.0f%%", p.percent)
  end
  return text .. ")"
end

local function condition_message(status, ctype)
  if status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == ctype and c.status == "True" and c.message ~= nil and c.message ~= "" then
      return c.message
    end
  end
  return nil
end

local status = obj.status
if status == nil or status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the align-operator to pick up the job"
  return hs
end

local phase = status.phase

if phase == "Succeeded" then
  hs.status = "Healthy"
  hs.message = "Training succeeded" .. progress(status)
elseif phase == "Failed" then
  hs.status = "Degraded"
  local reason, message = "Failed", condition_message(status, "Failed")
  if status.lastError ~= nil then
    reason = status.lastError.reason or reason
    message = status.lastError.message or message
  end
  hs.message = reason .. ": " .. (message or "see kubectl describe")
elseif phase == "Cancelled" then
  -- a deliberate, final stop: not a failure (Degraded), and nothing is progressing
  hs.status = "Suspended"
  hs.message = "Cancelled" .. progress(status) .. "; checkpoints kept (final)"
elseif phase == "Suspended" then
  -- the operator says Suspended only once no trainer pod runs; while they checkpoint the phase is Running
  hs.status = "Suspended"
  hs.message = "Suspended" .. progress(status) .. "; set spec.runPolicy.suspend=false to resume"
elseif phase == "Running" then
  hs.status = "Progressing"
  hs.message = (condition_message(status, "Running") or "Training") .. progress(status)
elseif phase == "Pending" or phase == "Waiting" or phase == "Queued" then
  hs.status = "Progressing"
  hs.message = condition_message(status, phase) or phase
else
  hs.status = "Unknown"
  hs.message = "Unknown phase " .. tostring(phase)
end
return hs

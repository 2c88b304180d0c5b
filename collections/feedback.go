package collections

// Feedback, surveys, application questions and email preferences (migration 1795480800_feedback).
const (
	Feedback = "feedback"
	Surveys  = "surveys"
)

// Program and affiliate fields of the application and of email preferences.
const (
	ProgramQuestions    = "questions"
	AffiliateAnswers    = "answers"
	AffiliateMailOptOut = "mail_opt_out"
	MessageCategory     = "category"
)

// Feedback fields (besides affiliate and program).
const (
	FeedbackRating  = "rating"
	FeedbackTopic   = "topic"
	FeedbackComment = "comment"
	FeedbackSurvey  = "survey"
	FeedbackRound   = "round"
)

// FeedbackTopicGeneral is the topic of an answer that names none (survey answers).
const FeedbackTopicGeneral = "general"

// FeedbackCommentMax is the longest comment, in characters (the field's Max).
const FeedbackCommentMax = 2000

// Survey fields (besides name and program).
const (
	SurveyQuestion = "question"
	SurveyAudience = "audience"
	SurveySchedule = "schedule"
	SurveySendAt   = "send_at"
	SurveyActive   = "active"
	SurveyLastSent = "last_sent"
)

// Mail categories an affiliate may opt out of (affiliates.mail_opt_out). Transactional mail
// (application, approval, payouts, commissions, tiers, password and verification) has no
// category and is always sent.
const (
	MailBroadcast = "broadcast"
	MailDigest    = "digest"
	MailSurvey    = "survey"
	MailIncentive = "incentive"
	MailMaterial  = "material"
)

// MailCategories lists them in the order forms show them.
func MailCategories() []string {
	return []string{MailBroadcast, MailDigest, MailSurvey, MailIncentive, MailMaterial}
}

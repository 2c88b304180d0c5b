package importfile

import (
	"fmt"
	"strings"
	"testing"
)

func TestParsePlatforms(t *testing.T) {
	for _, tc := range []struct {
		platform, file string
		want           []string // fmt of each row's name|email|codes|payout|status|coupon|balance
	}{
		{Rewardful, "First Name,Last Name,Email,PayPal Email,Wise Email,State,Token\n" +
			"Adam,Jones,ADAM@Example.com,,adam@wise.example,suspicious,Adam-J\n",
			[]string{"Adam Jones|adam@example.com|[adam-j]|adam@wise.example|suspended||false:0"}},
		{FirstPromoter, "\ufeffemail,state,ref_id,current_balance,currency\nx@example.com,denied,X_1,-2.5,eur\n",
			[]string{"x|x@example.com|[x_1]||rejected||true:-250"}},
		{Tapfiliate, "firstname,lastname,email,referral_code,tap_a,approved,coupons\nFay,Wong,fay@example.com,fayw,123-abc,no,FAY5\n",
			[]string{"Fay Wong|fay@example.com|[fayw 123-abc]||pending|fay5|false:0"}},
		{CSV, "name,email,code,payout_email,status,balance\nJo,jo@example.com,,,,0\n",
			[]string{"Jo|jo@example.com|[]||approved||true:0"}},
	} {
		rows, problems, err := Parse(strings.NewReader(tc.file), tc.platform, "usd")
		if err != nil || len(problems) > 0 {
			t.Fatalf("%s: %v %v", tc.platform, err, problems)
		}
		var got []string
		for _, r := range rows {
			got = append(got, fmt.Sprintf("%s|%s|%v|%s|%s|%s|%v:%d", r.Name, r.Email, r.Codes(), r.PayoutEmail, r.Status, r.Coupon, r.HasBalance, r.Balance))
		}
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%s:\n got %v\nwant %v", tc.platform, got, tc.want)
		}
	}
}

func TestParseProblems(t *testing.T) {
	for _, tc := range []struct {
		platform, file string
		want           []string // line/field/code of each problem
	}{
		{CSV, "name,email,code\n", []string{"1/header/missing_column", "1/header/missing_column"}},
		{CSV, "name,email,code,payout_email,status,nickname\n", []string{"1/header/unknown_column"}},
		{Rewardful, "first_name,token\nA,a\n", []string{"1/header/missing_column"}},
		{CSV, "name,email,code,payout_email,status,balance,currency,coupon\n" +
			"A,a@example.com,a-1,pay@,approved,1.5.0,usd,c\n" +
			"B,b@example.com,A-1,,maybe,1.999,xyz,ok\n" +
			"C,a@example.com,c-1,,approved,,,OK\n",
			[]string{"2/payout_email/invalid_email", "2/coupon/invalid_coupon", "2/balance/invalid_amount",
				"3/status/unknown_status", "3/currency/invalid_currency",
				"3/code/duplicate_code", "4/email/duplicate_email", "4/coupon/duplicate_coupon"}},
		{Tapfiliate, "firstname,email,approved\nZ,z@example.com,perhaps\n", []string{"2/status/unknown_status"}},
	} {
		_, problems, err := Parse(strings.NewReader(tc.file), tc.platform, "usd")
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, p := range problems {
			got = append(got, fmt.Sprintf("%d/%s/%s", p.Line, p.Field, p.Code))
		}
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%s %q:\n got %v\nwant %v", tc.platform, tc.file, got, tc.want)
		}
	}
}

// Package csvsafe defuses spreadsheet formulas in CSV cells people typed themselves, so an
// export opened in Excel, LibreOffice or Google Sheets never runs a name like "=HYPERLINK(…)".
package csvsafe

import "strings"

// Cell returns s with a leading apostrophe when its first character would make a spreadsheet
// read it as a formula (= + - @) or a control prefix (tab, carriage return).
func Cell(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}
